//! What a committed event looks like to a webhook receiver.
//!
//! MLflow 3 names webhook events `<entity>.<action>` and sends
//! `{"entity", "action", "timestamp", "data"}`. For the six events MLflow has
//! (`registered_model.created`, `model_version.created`, `model_version_tag.set` / `.deleted`,
//! `model_version_alias.created` / `.deleted`) we send MLflow's names and MLflow's `data` fields,
//! so receivers written for MLflow work unchanged (versions are strings there, as in MLflow's
//! REST API). Everything else model-ledger records (stage transitions, renames, deletions,
//! artifact verification, model tags and descriptions) MLflow has no event for; those go out
//! under `ledger.<entity>.<action>` names, so they can never collide with an event MLflow adds
//! later, and their `data` is our own event payload plus the model's name.
//! Signed checkpoints of the chain head are not events in the log, but a receiver can subscribe
//! to them too, as `ledger.checkpoint.created` (see [`checkpoint_event`]).
//!
//! The body has exactly MLflow's four top-level keys, so receivers that validate the shape
//! strictly keep working; anything else a receiver needs (the delivery id that makes a
//! redelivery recognisable) travels in headers.

use serde_json::{Value, json};

use crate::domain::events::{EventEnvelope, EventPayload};
use crate::store::CheckpointRecord;

/// The events a webhook may subscribe to, MLflow's first.
pub const EVENT_NAMES: [&str; 31] = [
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "ledger.registered_model.renamed",
    "ledger.registered_model.description_updated",
    "ledger.registered_model_tag.set",
    "ledger.registered_model_tag.deleted",
    "ledger.registered_model.deleted",
    "ledger.model_version.description_updated",
    "ledger.model_version.stage_transitioned",
    "ledger.model_version.deleted",
    "ledger.model_version.artifact_verified",
    "ledger.model_version.artifact_verification_failed",
    "ledger.model_version.run_artifacts_pinned",
    "ledger.model_version.metrics_recorded",
    "ledger.model_version.signature_recorded",
    "ledger.transition_request.created",
    "ledger.transition_request.approved",
    "ledger.transition_request.rejected",
    "ledger.transition_request.cancelled",
    "ledger.transition_request.expired",
    "ledger.transition_request.voided",
    "ledger.model_version_comment.created",
    "ledger.model_version_comment.updated",
    "ledger.model_version_comment.deleted",
    CHECKPOINT_CREATED,
    // Sent only by `test_webhook`, never by a committed event.
    "ledger.webhook.test",
    // Reserved for MLflow clients that subscribe to prompt events; model-ledger has no prompts,
    // so nothing is ever delivered under it, but subscribing is not an error.
    "prompt.created",
];

/// A signed checkpoint of the chain head was recorded (not an event in the log: see
/// [`checkpoint_event`]).
pub const CHECKPOINT_CREATED: &str = "ledger.checkpoint.created";

/// Whether `name` is an event a webhook may subscribe to.
pub fn is_known_event(name: &str) -> bool {
    EVENT_NAMES.contains(&name)
}

/// One event as a receiver sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub name: &'static str,
    pub body: Value,
}

/// The webhook event for a committed event, or `None` when the payload cannot be read (an
/// event type from a newer build; it is then skipped, not guessed at).
pub fn webhook_event(envelope: &EventEnvelope) -> Option<WebhookEvent> {
    let payload = envelope.typed_payload().ok()?;
    let model = envelope.model_name.as_str();
    let (name, data) = match &payload {
        EventPayload::ModelCreated {
            name,
            description,
            tags,
        } => (
            "registered_model.created",
            json!({"name": name.as_str(), "tags": tags_json(tags), "description": description}),
        ),
        EventPayload::VersionCreated {
            version,
            source,
            run_id,
            description,
            tags,
            ..
        } => (
            "model_version.created",
            json!({
                "name": model, "version": version.to_string(), "source": source,
                "run_id": run_id, "tags": tags_json(tags), "description": description,
            }),
        ),
        EventPayload::VersionTagSet {
            version,
            key,
            value,
        } => (
            "model_version_tag.set",
            json!({"name": model, "version": version.to_string(), "key": key.as_str(), "value": value}),
        ),
        EventPayload::VersionTagDeleted { version, key } => (
            "model_version_tag.deleted",
            json!({"name": model, "version": version.to_string(), "key": key.as_str()}),
        ),
        EventPayload::AliasSet { alias, version, .. } => (
            "model_version_alias.created",
            json!({"name": model, "alias": alias.as_str(), "version": version.to_string()}),
        ),
        EventPayload::AliasDeleted { alias, .. } => (
            "model_version_alias.deleted",
            json!({"name": model, "alias": alias.as_str()}),
        ),
        other => (ledger_name(other), ledger_data(model, &envelope.payload)),
    };
    let (entity, action) = name.rsplit_once('.').unwrap_or((name, ""));
    Some(WebhookEvent {
        name,
        body: json!({
            "entity": entity,
            "action": action,
            "timestamp": envelope.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "data": data,
        }),
    })
}

/// What a receiver gets for a signed checkpoint: the fields of the NATS checkpoint event
/// (`origin`, `position`, `hash`, `key_id`, and `note`, the signed-note text whose signature
/// line a receiver verifies with the registry's public key) plus its `id` and `created_at`.
pub fn checkpoint_event(checkpoint: &CheckpointRecord) -> WebhookEvent {
    let at = checkpoint
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    WebhookEvent {
        name: CHECKPOINT_CREATED,
        body: json!({
            "entity": "ledger.checkpoint",
            "action": "created",
            "timestamp": at,
            "data": {
                "id": checkpoint.id, "position": checkpoint.position, "hash": checkpoint.hash,
                "created_at": at, "origin": checkpoint.origin, "key_id": checkpoint.key_id,
                "note": checkpoint.note,
            },
        }),
    }
}

/// The body `test_webhook` sends for `name`: the event's shape with example data, so a
/// receiver can be checked before any real event happens. `None` for an unknown name.
pub fn test_event(name: &str, at: chrono::DateTime<chrono::Utc>) -> Option<WebhookEvent> {
    let name = *EVENT_NAMES.iter().find(|n| **n == name)?;
    let data = match name {
        "registered_model.created" => json!({
            "name": "example_model", "tags": {"example_key": "example_value"},
            "description": "An example registered model",
        }),
        "model_version.created" => json!({
            "name": "example_model", "version": "1", "source": "models:/123",
            "run_id": "abcd1234abcd5678", "tags": {"example_key": "example_value"},
            "description": "An example model version",
        }),
        "model_version_tag.set" => json!({
            "name": "example_model", "version": "1", "key": "example_key", "value": "example_value",
        }),
        "model_version_tag.deleted" => {
            json!({"name": "example_model", "version": "1", "key": "example_key"})
        }
        "model_version_alias.created" => {
            json!({"name": "example_model", "alias": "example_alias", "version": "1"})
        }
        "model_version_alias.deleted" => json!({"name": "example_model", "alias": "example_alias"}),
        "prompt.created" => json!({"name": "example_prompt", "tags": {}, "description": null}),
        CHECKPOINT_CREATED => json!({
            "id": "00000000-0000-7000-8000-000000000000", "position": 42,
            "hash": "0".repeat(64), "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "origin": "model-ledger", "key_id": "00000000", "note": "model-ledger\n42\n…",
            "test": true,
        }),
        _ => json!({"name": "example_model", "test": true}),
    };
    let (entity, action) = name.rsplit_once('.').unwrap_or((name, ""));
    Some(WebhookEvent {
        name,
        body: json!({
            "entity": entity,
            "action": action,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "data": data,
        }),
    })
}

fn tags_json(tags: &std::collections::BTreeMap<crate::domain::names::TagKey, String>) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
            .collect(),
    )
}

fn ledger_name(payload: &EventPayload) -> &'static str {
    match payload {
        EventPayload::ModelRenamed { .. } => "ledger.registered_model.renamed",
        EventPayload::ModelDescriptionUpdated { .. } => {
            "ledger.registered_model.description_updated"
        }
        EventPayload::ModelTagSet { .. } => "ledger.registered_model_tag.set",
        EventPayload::ModelTagDeleted { .. } => "ledger.registered_model_tag.deleted",
        EventPayload::ModelDeleted {} => "ledger.registered_model.deleted",
        EventPayload::VersionDescriptionUpdated { .. } => {
            "ledger.model_version.description_updated"
        }
        EventPayload::StageTransitioned { .. } => "ledger.model_version.stage_transitioned",
        EventPayload::VersionDeleted { .. } => "ledger.model_version.deleted",
        EventPayload::ArtifactVerified { .. } => "ledger.model_version.artifact_verified",
        EventPayload::ArtifactVerificationFailed { .. } => {
            "ledger.model_version.artifact_verification_failed"
        }
        EventPayload::RunArtifactsPinned { .. } => "ledger.model_version.run_artifacts_pinned",
        EventPayload::MetricsRecorded { .. } => "ledger.model_version.metrics_recorded",
        EventPayload::SignatureRecorded { .. } => "ledger.model_version.signature_recorded",
        // approval workflow (issue #17)
        EventPayload::TransitionRequested { .. } => "ledger.transition_request.created",
        EventPayload::RequestApproved { .. } => "ledger.transition_request.approved",
        EventPayload::RequestRejected { .. } => "ledger.transition_request.rejected",
        EventPayload::RequestCancelled { .. } => "ledger.transition_request.cancelled",
        EventPayload::RequestExpired { .. } => "ledger.transition_request.expired",
        EventPayload::RequestVoided { .. } => "ledger.transition_request.voided",
        EventPayload::CommentAdded { .. } => "ledger.model_version_comment.created",
        EventPayload::CommentEdited { .. } => "ledger.model_version_comment.updated",
        EventPayload::CommentDeleted { .. } => "ledger.model_version_comment.deleted",
        // The MLflow-named events are matched before this is called.
        EventPayload::ModelCreated { .. }
        | EventPayload::VersionCreated { .. }
        | EventPayload::VersionTagSet { .. }
        | EventPayload::VersionTagDeleted { .. }
        | EventPayload::AliasSet { .. }
        | EventPayload::AliasDeleted { .. } => "ledger.unknown",
    }
}

/// Our own payload, minus the internal `type` tag, plus the model's name.
fn ledger_data(model: &str, stored: &Value) -> Value {
    let mut data = stored.as_object().cloned().unwrap_or_default();
    data.remove("type");
    data.insert("name".into(), Value::String(model.to_string()));
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the sender can give a committed event must be one a webhook can subscribe
    /// to, or that event is recorded and never delivered. The names are literals in
    /// `ledger_name`'s match, so they are read from this file's source: a new arm without a
    /// matching `EVENT_NAMES` entry fails here.
    #[test]
    fn every_name_the_sender_uses_can_be_subscribed_to() {
        let source = include_str!("events.rs");
        let body = source
            .split("fn ledger_name(")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("ledger_name is in this file");
        let names: Vec<&str> = body
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|n| *n != "ledger.unknown")
            .collect();
        assert!(names.len() >= 20, "read the match arms: {names:?}");
        for name in names {
            assert!(
                is_known_event(name),
                "{name} is sent but cannot be subscribed to"
            );
        }
    }
    use crate::domain::events::Actor;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn envelope(payload: Value) -> EventEnvelope {
        EventEnvelope {
            position: 1,
            event_id: Uuid::nil(),
            stream_id: Uuid::nil(),
            stream_version: 1,
            model_name: "churn".into(),
            event_type: payload["type"].as_str().unwrap_or("").into(),
            schema_version: 1,
            payload,
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            actor: Actor::system(),
            request_id: None,
            correlation_id: None,
            decision: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn mlflow_events_have_mlflows_names_and_data() {
        let e = webhook_event(&envelope(json!({
            "type": "VersionCreated", "version": 3, "source": "runs:/r/model", "run_id": "r",
            "description": "d", "tags": {"k": "v"},
        })))
        .unwrap();
        assert_eq!(e.name, "model_version.created");
        assert_eq!(
            e.body,
            json!({
                "entity": "model_version", "action": "created",
                "timestamp": "2026-01-02T03:04:05.000000Z",
                "data": {"name": "churn", "version": "3", "source": "runs:/r/model",
                         "run_id": "r", "tags": {"k": "v"}, "description": "d"},
            })
        );
        let e = webhook_event(&envelope(json!({
            "type": "AliasSet", "alias": "champion", "version": 2,
        })))
        .unwrap();
        assert_eq!(e.name, "model_version_alias.created");
        assert_eq!(e.body["entity"], "model_version_alias");
        assert_eq!(e.body["data"]["version"], "2");
    }

    #[test]
    fn ledger_events_use_their_own_namespace() {
        let e = webhook_event(&envelope(json!({
            "type": "StageTransitioned", "version": 1, "from": "None", "to": "Production",
            "reason": {"kind": "requested"},
        })))
        .unwrap();
        assert_eq!(e.name, "ledger.model_version.stage_transitioned");
        assert_eq!(e.body["entity"], "ledger.model_version");
        assert_eq!(e.body["action"], "stage_transitioned");
        assert_eq!(e.body["data"]["name"], "churn");
        assert_eq!(e.body["data"]["to"], "Production");
        assert!(e.body["data"].get("type").is_none());
        assert!(is_known_event(e.name));
    }

    #[test]
    fn a_checkpoint_carries_what_the_nats_checkpoint_event_does() {
        let record = CheckpointRecord {
            id: "c1".into(),
            position: 7,
            hash: "ab".repeat(32),
            created_at: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            origin: "model-ledger".into(),
            key_id: "0a0b0c0d".into(),
            note: "model-ledger\n7\nsigned".into(),
        };
        let e = checkpoint_event(&record);
        assert_eq!(e.name, "ledger.checkpoint.created");
        assert!(is_known_event(e.name));
        assert_eq!(e.body["entity"], "ledger.checkpoint");
        assert_eq!(e.body["action"], "created");
        assert_eq!(e.body["timestamp"], "2026-01-02T03:04:05.000000Z");
        let nats = crate::publish::cloudevent::checkpoint_event("src", &record);
        for field in ["origin", "position", "hash", "key_id", "note"] {
            assert_eq!(e.body["data"][field], nats["data"][field], "{field}");
        }
        assert_eq!(e.body["data"]["id"], "c1");
        assert_eq!(e.body["data"]["created_at"], e.body["timestamp"]);
        let sample = test_event(CHECKPOINT_CREATED, record.created_at).expect("a sample");
        assert_eq!(sample.body["entity"], "ledger.checkpoint");
        assert_eq!(sample.body["data"]["test"], true);
    }

    #[test]
    fn an_unreadable_payload_is_skipped() {
        assert_eq!(
            webhook_event(&envelope(json!({"type": "FromTheFuture"}))),
            None
        );
        assert!(!is_known_event("model_version.exploded"));
    }
}
