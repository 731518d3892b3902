//! Projection rows derived from [`ModelState`], and the plan of what one append rewrites.
//!
//! Both backends store projections in the same flat shape (text ids, microsecond integers,
//! JSON text for nested values), built here from the domain state. Live appends and `rebuild`
//! use the same row builders, which is why a rebuilt projection equals the live one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::domain::events::EventPayload;
use crate::domain::state::{ModelState, Verification, VersionState};

pub fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// `(key, value)` rows of one entity's tags.
pub type TagRows = Vec<(String, String)>;

/// One row of `registered_models`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub model_id: String,
    pub name: String,
    pub description: String,
    pub tags_json: String,
    pub aliases_json: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
    pub last_version: i64,
    pub stream_version: i64,
}

/// One row of `model_versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    pub model_id: String,
    pub version: i64,
    pub source: String,
    pub run_id: Option<String>,
    pub description: String,
    pub stage: String,
    pub tags_json: String,
    pub metrics_json: String,
    pub signature_json: Option<String>,
    pub input_example_json: Option<String>,
    pub artifact_json: Option<String>,
    pub artifact_digest: Option<String>,
    pub verification_status: String,
    pub verification_json: String,
    pub aliases_json: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
}

pub fn model_row(state: &ModelState) -> ModelRow {
    let aliases: BTreeMap<&str, u64> = state
        .aliases
        .iter()
        .map(|(a, v)| (a.as_str(), *v))
        .collect();
    ModelRow {
        model_id: state.model_id.to_string(),
        name: state.name.to_string(),
        description: state.description.clone(),
        tags_json: json(&state.tags),
        aliases_json: json(&aliases),
        created_at_us: micros(&state.created_at),
        updated_at_us: micros(&state.updated_at),
        created_by_subject: state.created_by.subject.clone(),
        created_by_issuer: state.created_by.issuer.clone(),
        last_version: state.last_version as i64,
        stream_version: state.stream_version,
    }
}

pub fn version_row(state: &ModelState, v: &VersionState) -> VersionRow {
    let aliases: Vec<String> = state
        .aliases_of(v.version)
        .into_iter()
        .map(String::from)
        .collect();
    let verification_status = match v.verification {
        Verification::NotVerified => "not_verified",
        Verification::Verified { .. } => "verified",
        Verification::Failed { .. } => "failed",
    };
    VersionRow {
        model_id: state.model_id.to_string(),
        version: v.version as i64,
        source: v.source.clone(),
        run_id: v.run_id.clone(),
        description: v.description.clone(),
        stage: v.stage.as_str().to_string(),
        tags_json: json(&v.tags),
        metrics_json: json(&v.metrics),
        signature_json: v.signature.as_ref().map(json),
        input_example_json: v.input_example.as_ref().map(json),
        artifact_json: v.artifact.as_ref().map(json),
        artifact_digest: v.artifact.as_ref().map(|a| a.digest.clone()),
        verification_status: verification_status.into(),
        verification_json: json(&v.verification),
        aliases_json: json(&aliases),
        created_at_us: micros(&v.created_at),
        updated_at_us: micros(&v.updated_at),
        created_by_subject: v.created_by.subject.clone(),
        created_by_issuer: v.created_by.issuer.clone(),
    }
}

/// What one append rewrites in the projection tables. Everything not named here is unchanged,
/// which keeps a stage transition on a model with hundreds of versions cheap.
#[derive(Debug, Clone)]
pub struct ProjectionPlan {
    pub model_id: String,
    /// `None` when the model was deleted: all its projection rows go.
    pub model: Option<ModelRow>,
    /// `(key, value)` rows replacing the model's tags, when they changed.
    pub model_tags: Option<Vec<(String, String)>>,
    /// `(alias, version)` rows replacing the model's aliases, when they changed.
    pub aliases: Option<Vec<(String, i64)>>,
    /// Full rows for the versions touched, with their tag rows when the tags changed (`None`
    /// leaves `version_tags` alone: a stage change need not rewrite them).
    pub upsert_versions: Vec<(VersionRow, Option<TagRows>)>,
    pub delete_versions: Vec<i64>,
    /// The snapshot `decide` loads next time.
    /// The model's whole state as JSON, when this append rewrites its snapshot (on creation,
    /// then every [`crate::store::SNAPSHOT_EVERY`] events; see `model_state` in the store).
    pub snapshot_json: Option<String>,
    pub stream_version: i64,
}

fn tag_rows(tags: &BTreeMap<crate::domain::TagKey, String>) -> Vec<(String, String)> {
    tags.iter()
        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
        .collect()
}

/// The plan after `events` turned the old state into `new`.
pub fn plan<'a>(
    new: &ModelState,
    events: impl IntoIterator<Item = &'a EventPayload>,
    write_snapshot: bool,
) -> ProjectionPlan {
    let snapshot_json = write_snapshot.then(|| json(new));
    let mut touched: BTreeSet<u64> = BTreeSet::new();
    let mut tags_changed: BTreeSet<u64> = BTreeSet::new();
    let mut model_tags_changed = false;
    let mut aliases_changed = false;
    for event in events {
        match event {
            EventPayload::ModelCreated { .. } => model_tags_changed = true,
            EventPayload::ModelTagSet { .. } | EventPayload::ModelTagDeleted { .. } => {
                model_tags_changed = true
            }
            EventPayload::AliasSet {
                version,
                previous_version,
                ..
            } => {
                aliases_changed = true;
                touched.insert(*version);
                touched.extend(previous_version);
            }
            EventPayload::AliasDeleted { version, .. } => {
                aliases_changed = true;
                touched.insert(*version);
            }
            EventPayload::VersionCreated { version, .. }
            | EventPayload::VersionTagSet { version, .. }
            | EventPayload::VersionTagDeleted { version, .. } => {
                touched.insert(*version);
                tags_changed.insert(*version);
            }
            other => touched.extend(other.version()),
        }
    }
    if new.deleted {
        return ProjectionPlan {
            model_id: new.model_id.to_string(),
            model: None,
            model_tags: None,
            aliases: None,
            upsert_versions: Vec::new(),
            delete_versions: Vec::new(),
            snapshot_json: snapshot_json.clone(),
            stream_version: new.stream_version,
        };
    }
    let mut upsert_versions = Vec::new();
    let mut delete_versions = Vec::new();
    for v in touched {
        match new.versions.get(&v) {
            Some(state) if !state.deleted => {
                let tags = tags_changed.contains(&v).then(|| tag_rows(&state.tags));
                upsert_versions.push((version_row(new, state), tags))
            }
            _ => delete_versions.push(v as i64),
        }
    }
    ProjectionPlan {
        model_id: new.model_id.to_string(),
        model: Some(model_row(new)),
        model_tags: model_tags_changed.then(|| tag_rows(&new.tags)),
        aliases: aliases_changed.then(|| alias_rows(new)),
        upsert_versions,
        delete_versions,
        snapshot_json,
        stream_version: new.stream_version,
    }
}

fn alias_rows(state: &ModelState) -> Vec<(String, i64)> {
    state
        .aliases
        .iter()
        .map(|(a, v)| (a.as_str().to_string(), *v as i64))
        .collect()
}

/// The plan that writes a whole model from scratch, as `rebuild` does.
pub fn full_plan(state: &ModelState) -> ProjectionPlan {
    let mut plan = ProjectionPlan {
        model_id: state.model_id.to_string(),
        model: None,
        model_tags: None,
        aliases: None,
        upsert_versions: Vec::new(),
        delete_versions: Vec::new(),
        snapshot_json: Some(json(state)),
        stream_version: state.stream_version,
    };
    if !state.deleted {
        plan.model = Some(model_row(state));
        plan.model_tags = Some(tag_rows(&state.tags));
        plan.aliases = Some(alias_rows(state));
        plan.upsert_versions = state
            .live_versions()
            .map(|v| (version_row(state, v), Some(tag_rows(&v.tags))))
            .collect();
    }
    plan
}
