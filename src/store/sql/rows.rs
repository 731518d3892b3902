//! Rows as the database returns them, decoded by column name, and their conversion to views.
//!
//! Each struct mirrors one `SELECT` list (the `*_COLUMNS` constants beside it), so a column
//! added to a query and not to its struct, or the other way round, fails loudly at the first
//! read rather than shifting every later field by one. JSON columns stay text here: decoding
//! them is where corruption is detected, in the `into_*` conversions.

use std::collections::BTreeMap;

use crate::domain::events::{Actor, EventEnvelope};
use crate::store::projection::from_micros;
use crate::store::views::{ModelView, Principal, VersionView};
use crate::store::{CheckpointRecord, DenialRecord, StoreError};

use super::{parse_json, parse_uuid};

pub(crate) const EVENT_COLUMNS: &str = "position, event_id, stream_id, stream_version, model_name, event_type, schema_version, payload, occurred_at_us, actor_subject, actor_issuer, actor_display_name, request_id, correlation_id, decision, prev_hash, hash";
pub(crate) const MODEL_COLUMNS: &str = "m.model_id, m.name, m.description, m.tags, m.aliases, m.created_at_us, m.updated_at_us, m.created_by_subject, m.created_by_issuer, m.last_version, m.stream_version";
pub(crate) const VERSION_COLUMNS: &str = "v.model_id, m.name, v.version, v.source, v.run_id, v.description, v.stage, v.tags, v.metrics, v.signature, v.input_example, v.artifact, v.verification_status, v.verification, v.aliases, v.created_at_us, v.updated_at_us, v.created_by_subject, v.created_by_issuer";

/// An event row as stored (the columns of `EVENT_COLUMNS`): payload and decision are the
/// canonical JSON text the hash covers. Decoded by position, not name (see its `FromRow`).
#[derive(Debug, Clone)]
pub struct EventColumns {
    pub position: i64,
    pub event_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub model_name: String,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: String,
    pub occurred_at_us: i64,
    pub actor_subject: String,
    pub actor_issuer: String,
    pub actor_display_name: Option<String>,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    pub decision: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The number of columns in [`EVENT_COLUMNS`].
const EVENT_COLUMN_COUNT: usize = 17;

/// Every query that decodes an [`EventColumns`] selects exactly [`EVENT_COLUMNS`], so columns
/// are taken by position: looking each name up in every row was about a tenth of a store
/// verification's time. A row of another width is refused, so a query that selects something
/// else fails at its first row instead of shifting fields.
impl<'r, R> sqlx::FromRow<'r, R> for EventColumns
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        if row.columns().len() != EVENT_COLUMN_COUNT {
            return Err(sqlx::Error::ColumnIndexOutOfBounds {
                index: EVENT_COLUMN_COUNT,
                len: row.columns().len(),
            });
        }
        Ok(EventColumns {
            position: row.try_get(0)?,
            event_id: row.try_get(1)?,
            stream_id: row.try_get(2)?,
            stream_version: row.try_get(3)?,
            model_name: row.try_get(4)?,
            event_type: row.try_get(5)?,
            schema_version: row.try_get(6)?,
            payload: row.try_get(7)?,
            occurred_at_us: row.try_get(8)?,
            actor_subject: row.try_get(9)?,
            actor_issuer: row.try_get(10)?,
            actor_display_name: row.try_get(11)?,
            request_id: row.try_get(12)?,
            correlation_id: row.try_get(13)?,
            decision: row.try_get(14)?,
            prev_hash: row.try_get(15)?,
            hash: row.try_get(16)?,
        })
    }
}

impl EventColumns {
    /// The stored fields as hash input, without decoding the JSON columns.
    pub fn text(&self) -> crate::domain::chain::EventText<'_> {
        use crate::domain::chain::Json;
        crate::domain::chain::EventText {
            position: self.position,
            event_id: &self.event_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            model_name: &self.model_name,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: Json::Canonical(&self.payload),
            occurred_at: from_micros(self.occurred_at_us),
            actor_subject: &self.actor_subject,
            actor_issuer: &self.actor_issuer,
            actor_display_name: self.actor_display_name.as_deref(),
            request_id: self.request_id.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
            decision: self.decision.as_deref().map(Json::Canonical),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }

    pub fn into_envelope(self) -> Result<EventEnvelope, StoreError> {
        Ok(EventEnvelope {
            position: self.position,
            event_id: parse_uuid(&self.event_id)?,
            stream_id: parse_uuid(&self.stream_id)?,
            stream_version: self.stream_version,
            model_name: self.model_name,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload: parse_json("event payload", &self.payload)?,
            occurred_at: from_micros(self.occurred_at_us),
            actor: Actor {
                subject: self.actor_subject,
                issuer: self.actor_issuer,
                display_name: self.actor_display_name,
            },
            request_id: self.request_id,
            correlation_id: self.correlation_id,
            decision: self
                .decision
                .as_deref()
                .map(|d| parse_json("decision", d))
                .transpose()?,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// A `registered_models` row (the columns of `MODEL_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct ModelColumns {
    pub model_id: String,
    pub name: String,
    pub description: String,
    pub tags: String,
    pub aliases: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
    pub last_version: i64,
    pub stream_version: i64,
}

impl ModelColumns {
    pub fn into_view(self) -> Result<ModelView, StoreError> {
        Ok(ModelView {
            model_id: self.model_id,
            name: self.name,
            description: self.description,
            tags: serde_json::from_str(&self.tags)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            aliases: serde_json::from_str(&self.aliases)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            created_at: from_micros(self.created_at_us),
            updated_at: from_micros(self.updated_at_us),
            created_by: Principal {
                subject: self.created_by_subject,
                issuer: self.created_by_issuer,
            },
            last_version: self.last_version.max(0) as u64,
            stream_version: self.stream_version,
        })
    }
}

/// A `model_versions` row with its model's name (the columns of `VERSION_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct VersionColumns {
    pub model_id: String,
    pub name: String,
    pub version: i64,
    pub source: String,
    pub run_id: Option<String>,
    pub description: String,
    pub stage: String,
    pub tags: String,
    pub metrics: String,
    pub signature: Option<String>,
    pub input_example: Option<String>,
    pub artifact: Option<String>,
    pub verification_status: String,
    pub verification: String,
    pub aliases: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub created_by_subject: String,
    pub created_by_issuer: String,
}

impl VersionColumns {
    pub fn into_view(self) -> Result<VersionView, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        Ok(VersionView {
            model_id: self.model_id,
            name: self.name,
            version: self.version.max(0) as u64,
            source: self.source,
            run_id: self.run_id,
            description: self.description,
            stage: self.stage,
            status: "READY",
            tags: serde_json::from_str::<BTreeMap<String, String>>(&self.tags).map_err(corrupt)?,
            metrics: serde_json::from_str(&self.metrics).map_err(corrupt)?,
            signature: self
                .signature
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            input_example: self
                .input_example
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            artifact: self
                .artifact
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
            artifact_verified: self.verification_status == "verified",
            verification: serde_json::from_str(&self.verification).map_err(corrupt)?,
            aliases: serde_json::from_str(&self.aliases).map_err(corrupt)?,
            created_at: from_micros(self.created_at_us),
            updated_at: from_micros(self.updated_at_us),
            created_by: Principal {
                subject: self.created_by_subject,
                issuer: self.created_by_issuer,
            },
        })
    }
}

/// A `checkpoints` row.
#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub id: String,
    pub position: i64,
    pub hash: String,
    pub created_at_us: i64,
    pub origin: String,
    pub key_id: String,
    pub note: String,
}

pub(crate) const CHECKPOINT_COLUMNS: &str =
    "c.id, c.position, c.hash, c.created_at_us, c.origin, c.key_id, c.note";

impl CheckpointRow {
    pub fn into_record(self) -> CheckpointRecord {
        CheckpointRecord {
            id: self.id,
            position: self.position,
            hash: self.hash,
            created_at: from_micros(self.created_at_us),
            origin: self.origin,
            key_id: self.key_id,
            note: self.note,
        }
    }
}

/// An `access_decisions` row.
#[derive(sqlx::FromRow)]
pub(crate) struct DenialRow {
    pub id: String,
    pub occurred_at_us: i64,
    pub actor_subject: String,
    pub actor_issuer: String,
    pub action: String,
    pub model_name: String,
    pub version: Option<i64>,
    pub decision: String,
    pub request_id: Option<String>,
    pub repeats: i64,
    pub last_at_us: Option<i64>,
}

impl DenialRow {
    pub fn into_record(self) -> Result<DenialRecord, StoreError> {
        Ok(DenialRecord {
            id: self.id,
            occurred_at: from_micros(self.occurred_at_us),
            actor: Actor {
                subject: self.actor_subject,
                issuer: self.actor_issuer,
                display_name: None,
            },
            action: self.action,
            model_name: self.model_name,
            version: self.version,
            decision: serde_json::from_str(&self.decision)
                .map_err(|e| StoreError::Corrupt(format!("access decision: {e}")))?,
            request_id: self.request_id,
            repeats: self.repeats,
            last_at: self.last_at_us.map(from_micros),
        })
    }
}

/// A `model_state` row: the stored snapshot and how far it lags the stream.
#[derive(sqlx::FromRow)]
pub(crate) struct SnapshotRow {
    pub model_id: String,
    pub state: String,
    pub snapshot_version: i64,
    pub stream_version: i64,
}

/// The event columns `materialize` folds onto a snapshot.
#[derive(sqlx::FromRow)]
pub(crate) struct FoldRow {
    pub payload: String,
    pub occurred_at_us: i64,
    pub actor_subject: String,
    pub actor_issuer: String,
    pub actor_display_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_column_count_matches_the_select_list() {
        assert_eq!(EVENT_COLUMNS.split(',').count(), EVENT_COLUMN_COUNT);
    }
}
