//! What callers ask the registry to do.
//!
//! A command carries already-validated values (see [`super::names`]). Both the native API and
//! the MLflow-compatible API translate their requests into these, so every write, whatever its
//! wire format, takes the same path: decide → authorize → append → project → outbox.

use std::collections::BTreeMap;

use serde::Serialize;

use super::action::Action;
use super::events::{ArtifactManifest, RunEvidence, VerificationFailure};
use super::names::{AliasName, ModelName, Stage, TagKey};

/// The outcome of re-hashing a version's files, to be recorded as an event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum VerificationOutcome {
    Verified { digest: String, files: u64 },
    Failed { failures: Vec<VerificationFailure> },
}

// Short-lived values passed by value once per command; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command")]
pub enum Command {
    CreateModel {
        name: ModelName,
        description: String,
        tags: BTreeMap<TagKey, String>,
    },
    RenameModel {
        name: ModelName,
        new_name: ModelName,
    },
    UpdateModel {
        name: ModelName,
        description: String,
    },
    SetModelTag {
        name: ModelName,
        key: TagKey,
        value: String,
    },
    DeleteModelTag {
        name: ModelName,
        key: TagKey,
    },
    DeleteModel {
        name: ModelName,
    },
    CreateVersion {
        name: ModelName,
        source: String,
        run_id: Option<String>,
        description: String,
        tags: BTreeMap<TagKey, String>,
        metrics: BTreeMap<String, f64>,
        signature: Option<serde_json::Value>,
        input_example: Option<serde_json::Value>,
        artifact: Option<ArtifactManifest>,
        /// Filled by the service from the tracking upstream, never by callers.
        run_evidence: Option<RunEvidence>,
    },
    UpdateVersion {
        name: ModelName,
        version: u64,
        description: String,
    },
    SetVersionTag {
        name: ModelName,
        version: u64,
        key: TagKey,
        value: String,
    },
    DeleteVersionTag {
        name: ModelName,
        version: u64,
        key: TagKey,
    },
    TransitionStage {
        name: ModelName,
        version: u64,
        stage: Stage,
        comment: Option<String>,
        archive_existing_versions: bool,
    },
    RollbackStage {
        name: ModelName,
        stage: Stage,
        comment: Option<String>,
    },
    SetAlias {
        name: ModelName,
        alias: AliasName,
        version: u64,
    },
    DeleteAlias {
        name: ModelName,
        alias: AliasName,
    },
    DeleteVersion {
        name: ModelName,
        version: u64,
    },
    RecordVerification {
        name: ModelName,
        version: u64,
        outcome: VerificationOutcome,
    },
    // --- run evidence (issue #16) ---
    /// Records the manifest of a run-based version whose pin was pending. Issued only by the
    /// server's own pinning (never from a request), as the system principal.
    PinRunArtifacts {
        name: ModelName,
        version: u64,
        artifact: ArtifactManifest,
        attempts: u32,
    },
    /// Adds or replaces metrics of an existing version: the evidence a quality gate reads, for
    /// versions whose metrics were not known when they were created.
    RecordMetrics {
        name: ModelName,
        version: u64,
        metrics: BTreeMap<String, f64>,
    },
    /// Records a model signature whose signer was established as trusted; `decide` binds it
    /// to the version's manifest (see `domain::signing`).
    RecordSignature {
        name: ModelName,
        version: u64,
        claim: crate::domain::signing::SignatureClaim,
    },
    // --- approval workflow (issue #17) ---
    /// Asks for `version` to move to `stage`; another principal approves it.
    RequestTransition {
        name: ModelName,
        version: u64,
        stage: Stage,
        comment: Option<String>,
    },
    /// Approves a request; the approval that completes it executes the transition in the same
    /// append, with `archive_existing_versions` as the approver gives it.
    ApproveRequest {
        name: ModelName,
        id: String,
        comment: Option<String>,
        archive_existing_versions: bool,
    },
    RejectRequest {
        name: ModelName,
        id: String,
        comment: Option<String>,
    },
    /// Withdrawn by its requester.
    CancelRequest {
        name: ModelName,
        id: String,
        comment: Option<String>,
    },
    /// Closes a request that expired or whose binding no longer holds. Issued only by the
    /// server's sweep, as the system principal.
    CloseStaleRequest {
        name: ModelName,
        id: String,
    },
    AddComment {
        name: ModelName,
        version: u64,
        comment: String,
    },
    EditComment {
        name: ModelName,
        id: String,
        comment: String,
    },
    DeleteComment {
        name: ModelName,
        id: String,
    },
}

impl Command {
    /// The model the command acts on (for a rename, its current name).
    pub fn model_name(&self) -> &ModelName {
        match self {
            Command::CreateModel { name, .. }
            | Command::RenameModel { name, .. }
            | Command::UpdateModel { name, .. }
            | Command::SetModelTag { name, .. }
            | Command::DeleteModelTag { name, .. }
            | Command::DeleteModel { name }
            | Command::CreateVersion { name, .. }
            | Command::UpdateVersion { name, .. }
            | Command::SetVersionTag { name, .. }
            | Command::DeleteVersionTag { name, .. }
            | Command::TransitionStage { name, .. }
            | Command::RollbackStage { name, .. }
            | Command::SetAlias { name, .. }
            | Command::DeleteAlias { name, .. }
            | Command::DeleteVersion { name, .. }
            | Command::RecordVerification { name, .. }
            | Command::PinRunArtifacts { name, .. }
            | Command::RecordMetrics { name, .. }
            | Command::RecordSignature { name, .. }
            | Command::RequestTransition { name, .. }
            | Command::ApproveRequest { name, .. }
            | Command::RejectRequest { name, .. }
            | Command::CancelRequest { name, .. }
            | Command::CloseStaleRequest { name, .. }
            | Command::AddComment { name, .. }
            | Command::EditComment { name, .. }
            | Command::DeleteComment { name, .. } => name,
        }
    }

    /// The version the command targets, when it targets one.
    pub fn version(&self) -> Option<u64> {
        match self {
            Command::UpdateVersion { version, .. }
            | Command::SetVersionTag { version, .. }
            | Command::DeleteVersionTag { version, .. }
            | Command::TransitionStage { version, .. }
            | Command::SetAlias { version, .. }
            | Command::DeleteVersion { version, .. }
            | Command::RecordVerification { version, .. }
            | Command::PinRunArtifacts { version, .. }
            | Command::RecordMetrics { version, .. }
            | Command::RecordSignature { version, .. }
            | Command::RequestTransition { version, .. }
            | Command::AddComment { version, .. } => Some(*version),
            _ => None,
        }
    }

    /// The transition request a command acts on by id, if it does.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Command::ApproveRequest { id, .. }
            | Command::RejectRequest { id, .. }
            | Command::CancelRequest { id, .. }
            | Command::CloseStaleRequest { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The comment a command acts on by id, if it does.
    pub fn comment_id(&self) -> Option<&str> {
        match self {
            Command::EditComment { id, .. } | Command::DeleteComment { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The action that authorizes this command (see policies/model_ledger.cedarschema).
    pub fn action(&self) -> Action {
        match self {
            Command::CreateModel { .. } => Action::CreateModel,
            Command::RenameModel { .. } => Action::RenameModel,
            Command::SetModelTag { key, .. } | Command::DeleteModelTag { key, .. }
                if key.is_gate() =>
            {
                Action::ChangeGate
            }
            Command::UpdateModel { .. }
            | Command::SetModelTag { .. }
            | Command::DeleteModelTag { .. } => Action::UpdateModel,
            Command::DeleteModel { .. } => Action::DeleteModel,
            Command::CreateVersion { .. } => Action::CreateVersion,
            Command::UpdateVersion { .. }
            | Command::SetVersionTag { .. }
            | Command::DeleteVersionTag { .. } => Action::UpdateVersion,
            Command::TransitionStage { .. } | Command::RollbackStage { .. } => {
                Action::TransitionStage
            }
            Command::SetAlias { .. } => Action::SetAlias,
            Command::DeleteAlias { .. } => Action::DeleteAlias,
            Command::DeleteVersion { .. } => Action::DeleteVersion,
            Command::RecordVerification { .. } => Action::VerifyArtifact,
            Command::PinRunArtifacts { .. } => Action::PinRunArtifacts,
            Command::RecordMetrics { .. } => Action::RecordMetrics,
            Command::RecordSignature { .. } => Action::RecordSignature,
            Command::RequestTransition { .. } => Action::RequestTransition,
            Command::ApproveRequest { .. } => Action::ApproveTransition,
            Command::RejectRequest { .. } => Action::RejectTransition,
            Command::CancelRequest { .. } => Action::CancelTransition,
            Command::CloseStaleRequest { .. } => Action::ExpireRequest,
            Command::AddComment { .. }
            | Command::EditComment { .. }
            | Command::DeleteComment { .. } => Action::Comment,
        }
    }
}
