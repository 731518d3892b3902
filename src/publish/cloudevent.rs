//! The CloudEvents 1.0 JSON envelope (structured mode) every published event is wrapped in.
//!
//! `data` is the stored [`EventEnvelope`] unchanged, position and hash included, so a
//! subscriber can check order, detect gaps and verify the hash chain without asking the
//! registry; the CloudEvents attributes only make the message routable by generic tooling.

use serde_json::{Value, json};

use crate::domain::events::EventEnvelope;
use crate::store::CheckpointRecord;

/// Prefix of the CloudEvents `type` attribute (`io.model-ledger.StageTransitioned`).
pub const TYPE_PREFIX: &str = "io.model-ledger.";

/// Builds the CloudEvent for one stored event.
pub fn cloud_event(source: &str, event: &EventEnvelope) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.event_id.to_string(),
        "source": source,
        "type": format!("{TYPE_PREFIX}{}", event.event_type),
        "subject": event.model_name,
        "time": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        // Extension attribute (lower-case alphanumerics only, per the spec) so routers can
        // order or deduplicate without parsing `data`.
        "position": event.position,
        "data": event,
    })
}

/// `type` of a published checkpoint.
pub const CHECKPOINT_TYPE: &str = "io.model-ledger.Checkpoint";

/// Builds the CloudEvent for a signed checkpoint. `data.note` is the signed note exactly as
/// signed, so a subscriber can store it and later run `model-ledger audit verify --checkpoint`
/// against the log; the other fields repeat what the note says, for routing.
pub fn checkpoint_event(source: &str, checkpoint: &CheckpointRecord) -> Value {
    json!({
        "specversion": "1.0",
        "id": checkpoint.id,
        "source": source,
        "type": CHECKPOINT_TYPE,
        "time": checkpoint.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "position": checkpoint.position,
        "data": {
            "origin": checkpoint.origin,
            "position": checkpoint.position,
            "hash": checkpoint.hash,
            "key_id": checkpoint.key_id,
            "note": checkpoint.note,
        },
    })
}
