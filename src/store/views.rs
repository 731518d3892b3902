//! What reads return: registered models and versions as the projections hold them.
//!
//! These are the native API's JSON shapes too; the MLflow layer maps them to MLflow's wire
//! format. Timestamps are RFC 3339 here and milliseconds there.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub subject: String,
    pub issuer: String,
}

/// A model's newest event: what changed last, who changed it and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastChange {
    pub model_id: String,
    pub event_type: String,
    pub actor: crate::domain::Actor,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView {
    pub model_id: String,
    pub name: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub aliases: BTreeMap<String, u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Principal,
    /// Highest version number allocated so far (versions are never renumbered).
    pub last_version: u64,
    /// The model's stream version: send it as `If-Match` to make a write conditional.
    pub stream_version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionView {
    pub model_id: String,
    pub name: String,
    pub version: u64,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub description: String,
    pub stage: String,
    /// Always `READY`: a version is usable once its event is committed.
    pub status: &'static str,
    pub tags: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_example: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<serde_json::Value>,
    pub artifact_verified: bool,
    pub verification: serde_json::Value,
    pub aliases: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Principal,
}

impl ModelView {
    /// The view of a model as a just-decided state would project it, so a write can answer
    /// without reading back what it wrote.
    pub fn from_state(state: &crate::domain::ModelState) -> Self {
        let row = crate::store::projection::model_row(state);
        let aliases = state
            .aliases
            .iter()
            .map(|(a, v)| (a.as_str().to_string(), *v))
            .collect();
        ModelView {
            model_id: row.model_id,
            name: row.name,
            description: row.description,
            tags: state
                .tags
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect(),
            aliases,
            created_at: state.created_at,
            updated_at: state.updated_at,
            created_by: Principal {
                subject: row.created_by_subject,
                issuer: row.created_by_issuer,
            },
            last_version: state.last_version,
            stream_version: state.stream_version,
        }
    }
}

impl VersionView {
    /// The view of one version of a just-decided state (`None` if it is absent or deleted).
    pub fn from_state(state: &crate::domain::ModelState, version: u64) -> Option<Self> {
        let v = state.live_version(version)?;
        let row = crate::store::projection::version_row(state, v);
        Some(VersionView {
            model_id: row.model_id,
            name: state.name.to_string(),
            version,
            source: row.source,
            run_id: row.run_id,
            description: row.description,
            stage: row.stage,
            status: "READY",
            tags: v
                .tags
                .iter()
                .map(|(k, val)| (k.as_str().to_string(), val.clone()))
                .collect(),
            metrics: v.metrics.clone(),
            signature: v.signature.clone(),
            input_example: v.input_example.clone(),
            artifact: v
                .artifact
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok()),
            artifact_verified: v.artifact_verified(),
            verification: serde_json::to_value(&v.verification).unwrap_or_default(),
            aliases: state
                .aliases_of(version)
                .into_iter()
                .map(String::from)
                .collect(),
            created_at: v.created_at,
            updated_at: v.updated_at,
            created_by: Principal {
                subject: row.created_by_subject,
                issuer: row.created_by_issuer,
            },
        })
    }
}
