//! The facts model-ledger records.
//!
//! An [`EventPayload`] says what happened to one registered model; an [`EventEnvelope`] adds who,
//! when, in which stream, at which global position, under which authorization decision, and the
//! hash-chain link. Payloads are never changed once written: a new meaning gets a new variant (or
//! a new `schema_version`), so old events keep replaying to the same state.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::names::{AliasName, ModelName, Stage, TagKey};

/// The schema version written with every event produced by this build.
pub const CURRENT_SCHEMA_VERSION: i32 = 1;

/// Who did something. Issuer and subject together identify a principal; the display name is
/// for people reading the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub subject: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl Actor {
    /// The actor recorded for work the server does on its own (e.g. `rebuild`, migrations).
    pub fn system() -> Self {
        Actor {
            subject: "model-ledger".into(),
            issuer: "model-ledger:system".into(),
            display_name: Some("model-ledger system".into()),
        }
    }
}

/// Why a version changed stage. Recorded so the audit trail can tell a promotion from the
/// archiving it caused, or from a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransitionReason {
    /// A caller asked for this transition.
    Requested,
    /// Archived because another version entered `stage` with `archive_existing_versions`.
    ArchivedByPromotion { promoted_version: u64 },
    /// This version came back to the stage because the one after it was rolled back.
    Rollback { rolled_back_from: u64 },
    /// This version left the stage because it was rolled back.
    RolledBack { restored_version: u64 },
}

/// One file of a version's artifacts, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The files of a version and the digest over them (see docs/events.md for the canonical
/// encoding the digest covers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactManifest {
    /// Where the files live, as a store URL plus prefix (e.g. `file:///…/artifacts/m/1`).
    pub location: String,
    pub files: Vec<ManifestFile>,
    pub digest: String,
}

/// What the MLflow tracking server said about a version's training run when the version was
/// registered (see docs/events.md). Captured once, so a later promotion decision rests on the
/// evidence as it was at registration, not on run data that can still change upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvidence {
    pub run_id: String,
    /// `captured` when the run was read; `unavailable` when the upstream could not be reached,
    /// in which case only `run_id`, `resolved_source` and `error` are meaningful.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<String>,
    /// MLflow 3's logged model the source resolved to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged_model_id: Option<String>,
    /// Where the version's files are: the source with `runs:/` and `models:/<model_id>`
    /// resolved through the tracking server.
    pub resolved_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Run pinning (issue #16): `pinned` when the run's files were hashed at registration
    /// (the version's `artifact` is their manifest), `pending` when they could not be read yet
    /// and are pinned later by a `RunArtifactsPinned` event. Absent in events recorded before
    /// run pinning existed and for versions that brought their own manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Why the pin is pending, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_error: Option<String>,
}

impl RunEvidence {
    pub const CAPTURED: &'static str = "captured";
    pub const UNAVAILABLE: &'static str = "unavailable";
    pub const PINNED: &'static str = "pinned";
    pub const PENDING: &'static str = "pending";
}

/// A file whose content did not match its manifest entry during verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationFailure {
    pub path: String,
    pub expected_sha256: String,
    /// `None` when the file is missing.
    pub actual_sha256: Option<String>,
    pub reason: String,
}

/// Everything that can happen to a registered model. The serde tag is the event type stored in
/// the `event_type` column and used in NATS subjects.
// Built once per event and then serialized; boxing the large variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventPayload {
    ModelCreated {
        name: ModelName,
        #[serde(default)]
        description: String,
        #[serde(default)]
        tags: BTreeMap<TagKey, String>,
    },
    ModelRenamed {
        from: ModelName,
        to: ModelName,
        /// The model (stream id) that last answered under `to`, when another one did: a
        /// subscriber resolving `models:/<to>/...` learns that a different model answers now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces_model_id: Option<String>,
    },
    ModelDescriptionUpdated {
        description: String,
    },
    ModelTagSet {
        key: TagKey,
        value: String,
        /// The value before this change; absent when the tag is new (and in events recorded
        /// before this field existed, whose hashes therefore stay the same).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    ModelTagDeleted {
        key: TagKey,
        /// The value the tag had, so a removed quality gate says what it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<String>,
    },
    ModelDeleted {},
    VersionCreated {
        version: u64,
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        #[serde(default)]
        description: String,
        #[serde(default)]
        tags: BTreeMap<TagKey, String>,
        #[serde(default)]
        metrics: BTreeMap<String, f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_example: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        artifact: Option<ArtifactManifest>,
        /// Added after schema version 1 as an optional field, so older events replay unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_evidence: Option<RunEvidence>,
    },
    VersionDescriptionUpdated {
        version: u64,
        description: String,
    },
    VersionTagSet {
        version: u64,
        key: TagKey,
        value: String,
    },
    VersionTagDeleted {
        version: u64,
        key: TagKey,
    },
    StageTransitioned {
        version: u64,
        from: Stage,
        to: Stage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        reason: TransitionReason,
        /// Approval workflow (#17): the transition request this transition executed, absent for
        /// direct transitions (and in events recorded before requests existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    AliasSet {
        alias: AliasName,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_version: Option<u64>,
    },
    AliasDeleted {
        alias: AliasName,
        version: u64,
    },
    VersionDeleted {
        version: u64,
    },
    ArtifactVerified {
        version: u64,
        digest: String,
        files: u64,
    },
    ArtifactVerificationFailed {
        version: u64,
        failures: Vec<VerificationFailure>,
    },
    // --- run evidence (issue #16): pinning a run's artifacts after registration ---
    /// The files of a version registered from a run, hashed after registration because the
    /// tracking server or its store could not be read then. Written by the server itself.
    RunArtifactsPinned {
        version: u64,
        artifact: ArtifactManifest,
        /// Attempts it took (1 = the first background try).
        attempts: u32,
    },
    /// Metrics recorded for a version after its creation; each named metric replaces the
    /// version's earlier value, which the log keeps.
    MetricsRecorded {
        version: u64,
        metrics: BTreeMap<String, f64>,
    },
    // --- approval workflow (issue #17); the actor of each is the envelope's ---
    /// Someone asked for `version` to move to `to_stage`. The binding says what was reviewed:
    /// the artifact and its verification (a change voids the request) and the policy set in
    /// force when it was opened (recorded only).
    TransitionRequested {
        request_id: String,
        version: u64,
        to_stage: Stage,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        artifact_digest: String,
        verification: String,
        policy_set_digest: String,
        expires_at: DateTime<Utc>,
    },
    /// One approval. When `completes` is true the stage transition follows in the same append
    /// (a `StageTransitioned` naming this request). `policy_set_digest` is the set the
    /// approval was decided under.
    RequestApproved {
        request_id: String,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// Distinct approvals including this one.
        approvals: u32,
        completes: bool,
        policy_set_digest: String,
    },
    RequestRejected {
        request_id: String,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    RequestCancelled {
        request_id: String,
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// Written by the system principal once the request's lifetime passed.
    RequestExpired {
        request_id: String,
        version: u64,
    },
    /// The version's artifact or verification changed (or the version was deleted) while the
    /// request was open.
    RequestVoided {
        request_id: String,
        version: u64,
        reason: String,
    },
    CommentAdded {
        comment_id: String,
        version: u64,
        comment: String,
    },
    CommentEdited {
        comment_id: String,
        version: u64,
        comment: String,
    },
    CommentDeleted {
        comment_id: String,
        version: u64,
    },
    /// An OpenSSF model signature by a trusted signer, compared with the version's manifest:
    /// `status` is `verified` (the same files) or `mismatch` (see `differences`).
    SignatureRecorded {
        version: u64,
        status: String,
        signer: crate::domain::signing::SignerIdentity,
        /// SHA-256 of the signed in-toto statement.
        statement_digest: String,
        /// The manifest digest the signature was compared with.
        manifest_digest: String,
        /// What differs (at most `MAX_RECORDED_DIFFERENCES` lines; `more_differences` counts
        /// the rest).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        differences: Vec<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        more_differences: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl EventPayload {
    /// The stored event type: the variant name, stable across releases.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::ModelCreated { .. } => "ModelCreated",
            EventPayload::ModelRenamed { .. } => "ModelRenamed",
            EventPayload::ModelDescriptionUpdated { .. } => "ModelDescriptionUpdated",
            EventPayload::ModelTagSet { .. } => "ModelTagSet",
            EventPayload::ModelTagDeleted { .. } => "ModelTagDeleted",
            EventPayload::ModelDeleted {} => "ModelDeleted",
            EventPayload::VersionCreated { .. } => "VersionCreated",
            EventPayload::VersionDescriptionUpdated { .. } => "VersionDescriptionUpdated",
            EventPayload::VersionTagSet { .. } => "VersionTagSet",
            EventPayload::VersionTagDeleted { .. } => "VersionTagDeleted",
            EventPayload::StageTransitioned { .. } => "StageTransitioned",
            EventPayload::AliasSet { .. } => "AliasSet",
            EventPayload::AliasDeleted { .. } => "AliasDeleted",
            EventPayload::VersionDeleted { .. } => "VersionDeleted",
            EventPayload::ArtifactVerified { .. } => "ArtifactVerified",
            EventPayload::ArtifactVerificationFailed { .. } => "ArtifactVerificationFailed",
            EventPayload::RunArtifactsPinned { .. } => "RunArtifactsPinned",
            EventPayload::MetricsRecorded { .. } => "MetricsRecorded",
            EventPayload::SignatureRecorded { .. } => "SignatureRecorded",
            EventPayload::TransitionRequested { .. } => "TransitionRequested",
            EventPayload::RequestApproved { .. } => "RequestApproved",
            EventPayload::RequestRejected { .. } => "RequestRejected",
            EventPayload::RequestCancelled { .. } => "RequestCancelled",
            EventPayload::RequestExpired { .. } => "RequestExpired",
            EventPayload::RequestVoided { .. } => "RequestVoided",
            EventPayload::CommentAdded { .. } => "CommentAdded",
            EventPayload::CommentEdited { .. } => "CommentEdited",
            EventPayload::CommentDeleted { .. } => "CommentDeleted",
        }
    }

    /// Whether the event moves the registered model's `last_updated_timestamp`. MLflow's SQL
    /// store moves it when the model itself, its set of versions or a version's stage changes,
    /// and leaves it alone for tags, aliases and a version's description; MLflow clients (and
    /// MLflow's own registry tests) order and compare on that, so the fold follows it. Events
    /// MLflow has no counterpart of keep moving it: they are changes to the model's record.
    pub fn touches_model_timestamp(&self) -> bool {
        !matches!(
            self,
            EventPayload::ModelTagSet { .. }
                | EventPayload::ModelTagDeleted { .. }
                | EventPayload::VersionDescriptionUpdated { .. }
                | EventPayload::VersionTagSet { .. }
                | EventPayload::VersionTagDeleted { .. }
                | EventPayload::AliasSet { .. }
                | EventPayload::AliasDeleted { .. }
        )
    }

    /// The version an event is about, if any: used to index events for version queries.
    pub fn version(&self) -> Option<u64> {
        match self {
            EventPayload::VersionCreated { version, .. }
            | EventPayload::VersionDescriptionUpdated { version, .. }
            | EventPayload::VersionTagSet { version, .. }
            | EventPayload::VersionTagDeleted { version, .. }
            | EventPayload::StageTransitioned { version, .. }
            | EventPayload::AliasSet { version, .. }
            | EventPayload::AliasDeleted { version, .. }
            | EventPayload::VersionDeleted { version }
            | EventPayload::ArtifactVerified { version, .. }
            | EventPayload::ArtifactVerificationFailed { version, .. }
            | EventPayload::RunArtifactsPinned { version, .. }
            | EventPayload::MetricsRecorded { version, .. }
            | EventPayload::SignatureRecorded { version, .. }
            | EventPayload::TransitionRequested { version, .. }
            | EventPayload::RequestApproved { version, .. }
            | EventPayload::RequestRejected { version, .. }
            | EventPayload::RequestCancelled { version, .. }
            | EventPayload::RequestExpired { version, .. }
            | EventPayload::RequestVoided { version, .. }
            | EventPayload::CommentAdded { version, .. }
            | EventPayload::CommentEdited { version, .. }
            | EventPayload::CommentDeleted { version, .. } => Some(*version),
            _ => None,
        }
    }

    /// Every event type name, for validating filters.
    pub const TYPES: [&'static str; 28] = [
        "ModelCreated",
        "ModelRenamed",
        "ModelDescriptionUpdated",
        "ModelTagSet",
        "ModelTagDeleted",
        "ModelDeleted",
        "VersionCreated",
        "VersionDescriptionUpdated",
        "VersionTagSet",
        "VersionTagDeleted",
        "StageTransitioned",
        "AliasSet",
        "AliasDeleted",
        "VersionDeleted",
        "ArtifactVerified",
        "ArtifactVerificationFailed",
        // run evidence (issue #16)
        "RunArtifactsPinned",
        "MetricsRecorded",
        "SignatureRecorded",
        // approval workflow (issue #17)
        "TransitionRequested",
        "RequestApproved",
        "RequestRejected",
        "RequestCancelled",
        "RequestExpired",
        "RequestVoided",
        "CommentAdded",
        "CommentEdited",
        "CommentDeleted",
    ];

    /// The transition request an approval-workflow event is about, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            EventPayload::TransitionRequested { request_id, .. }
            | EventPayload::RequestApproved { request_id, .. }
            | EventPayload::RequestRejected { request_id, .. }
            | EventPayload::RequestCancelled { request_id, .. }
            | EventPayload::RequestExpired { request_id, .. }
            | EventPayload::RequestVoided { request_id, .. } => Some(request_id),
            EventPayload::StageTransitioned { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// An event decided but not yet appended: it has no position or hash until the store assigns
/// them inside the append transaction.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub stream_version: i64,
    pub payload: EventPayload,
    pub occurred_at: DateTime<Utc>,
}

/// A stored event: the payload plus everything the audit trail needs. This is exactly what the
/// hash chain covers (see [`super::chain`]), what the event APIs return and what NATS carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub stream_version: i64,
    /// The model's name when the event was written (names can change by rename).
    pub model_name: String,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The authorization decision that allowed this event (principal, action, policy ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

impl EventEnvelope {
    /// Decodes the payload into the typed enum.
    pub fn typed_payload(&self) -> Result<EventPayload, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }
}
