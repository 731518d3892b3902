//! `decide`: the one function that turns a command into events, enforcing every invariant.
//!
//! It sees one model's state (or `None` when the model does not exist yet) and returns the
//! events to append, or a [`DomainError`]. It does no I/O, so its rules are tested below with
//! given/when/then cases and no database. Cross-model rules (a name is unique among live models)
//! are checked by the service before calling it and backed by a unique index in the store.

use chrono::{DateTime, Duration, Utc};

use super::approval::{self, ApprovalOutcome, Opening, TransitionRequest, WorkflowError};
use super::command::{Command, VerificationOutcome};
use super::events::{Actor, EventPayload, TransitionReason};
use super::names::{MAX_TAG_VALUE_CHARS, Stage};
use super::signing::SignatureStatus;
use super::state::ModelState;
pub use workflow::stale_requests;
use workflow::{
    check_comment, current_binding, require_own_comment, require_request, stale,
    with_voided_requests,
};

/// Descriptions are free text but bounded, so one request cannot bloat every later snapshot.
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;
/// Sources are URIs; MLflow's columns hold 500 characters, we allow more but not unbounded.
pub const MAX_SOURCE_CHARS: usize = 4_096;
/// Metrics one RecordMetrics command may carry; an evaluation reports a handful, and the
/// bound keeps one request from bloating the version's row and every later snapshot.
pub const MAX_RECORDED_METRICS: usize = 100;
/// MLflow's own limit for a metric key.
pub const MAX_METRIC_NAME_CHARS: usize = 250;

/// Comments on versions are short notes, not documents.
pub const MAX_COMMENT_CHARS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// A refusal of the approval workflow (#17); its code and status come with it.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// What `decide` needs to know beyond state and command for the approval workflow: who asks,
/// when, the id a new request or comment gets, how long a request lives, and whether the
/// policies let this approval complete its request (the N-of-M rule is policy, not code).
#[derive(Debug, Clone)]
pub struct DecideContext {
    pub actor: Actor,
    pub now: DateTime<Utc>,
    pub new_id: String,
    pub request_lifetime: Duration,
    pub approval_completes: bool,
}

impl DecideContext {
    /// The system principal, now, with a fresh id and the default lifetime.
    pub fn system() -> Self {
        DecideContext {
            actor: Actor::system(),
            now: Utc::now(),
            new_id: uuid::Uuid::now_v7().to_string(),
            request_lifetime: approval::DEFAULT_REQUEST_LIFETIME,
            approval_completes: true,
        }
    }
}

fn model_missing(name: &str) -> DomainError {
    DomainError::NotFound(format!("Registered model '{name}' does not exist"))
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::InvalidParameter(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

/// NaN or an infinity can never meet or miss a gate honestly, so no metric may be one.
fn check_metrics_finite(
    metrics: &std::collections::BTreeMap<String, f64>,
) -> Result<(), DomainError> {
    match metrics.iter().find(|(_, v)| !v.is_finite()) {
        Some((metric, _)) => Err(DomainError::InvalidParameter(format!(
            "metric '{metric}' must be a finite number"
        ))),
        None => Ok(()),
    }
}

fn check_tag_value(value: &str) -> Result<(), DomainError> {
    check_text("tag value", value, MAX_TAG_VALUE_CHARS)
}

/// Turns a command into the events that record it, as the system principal acting now.
pub fn decide(
    state: Option<&ModelState>,
    command: &Command,
) -> Result<Vec<EventPayload>, DomainError> {
    decide_in(state, command, &DecideContext::system())
}

/// Turns a command into the events that record it, for the caller and time in `ctx`.
pub fn decide_in(
    state: Option<&ModelState>,
    command: &Command,
    ctx: &DecideContext,
) -> Result<Vec<EventPayload>, DomainError> {
    let state = match (state.filter(|s| !s.deleted), command) {
        (
            None,
            Command::CreateModel {
                name,
                description,
                tags,
            },
        ) => {
            check_text("description", description, MAX_DESCRIPTION_CHARS)?;
            for value in tags.values() {
                check_tag_value(value)?;
            }
            return Ok(vec![EventPayload::ModelCreated {
                name: name.clone(),
                description: description.clone(),
                tags: tags.clone(),
            }]);
        }
        (None, _) => return Err(model_missing(command.model_name().as_str())),
        (Some(state), _) => state,
    };
    let name = &state.name;
    let version_missing = |v: u64| {
        DomainError::NotFound(format!(
            "Model Version (name={name}, version={v}) not found"
        ))
    };
    let require_version = |v: u64| state.live_version(v).ok_or_else(|| version_missing(v));

    let events = match command {
        Command::CreateModel { .. } => {
            return Err(DomainError::AlreadyExists(format!(
                "Registered Model (name={name}) already exists"
            )));
        }
        Command::RenameModel { new_name, .. } => {
            if new_name == name {
                return Err(DomainError::InvalidParameter(format!(
                    "Registered model is already named '{name}'"
                )));
            }
            vec![EventPayload::ModelRenamed {
                from: name.clone(),
                to: new_name.clone(),
                // Only the store knows the name's history; the service fills this in.
                replaces_model_id: None,
            }]
        }
        Command::UpdateModel { description, .. } => {
            check_text("description", description, MAX_DESCRIPTION_CHARS)?;
            vec![EventPayload::ModelDescriptionUpdated {
                description: description.clone(),
            }]
        }
        Command::SetModelTag { key, value, .. } => {
            check_tag_value(value)?;
            vec![EventPayload::ModelTagSet {
                key: key.clone(),
                value: value.clone(),
                previous: state.tags.get(key).cloned(),
            }]
        }
        Command::DeleteModelTag { key, .. } => {
            let Some(previous) = state.tags.get(key) else {
                return Err(DomainError::NotFound(format!(
                    "No tag with key '{}' on registered model '{name}'",
                    key.as_str()
                )));
            };
            vec![EventPayload::ModelTagDeleted {
                key: key.clone(),
                previous: Some(previous.clone()),
            }]
        }
        Command::DeleteModel { .. } => vec![EventPayload::ModelDeleted {}],
        Command::CreateVersion {
            source,
            run_id,
            description,
            tags,
            metrics,
            signature,
            input_example,
            artifact,
            run_evidence,
            ..
        } => {
            if source.trim().is_empty() {
                return Err(DomainError::InvalidParameter(
                    "source must not be empty".into(),
                ));
            }
            check_text("source", source, MAX_SOURCE_CHARS)?;
            // A source is a URI or a path; a control character in one is never a real location
            // and a NUL truncates it in C-based tools that read it later.
            if source.chars().any(char::is_control) {
                return Err(DomainError::InvalidParameter(
                    "source must not contain control characters".into(),
                ));
            }
            check_text("description", description, MAX_DESCRIPTION_CHARS)?;
            for value in tags.values() {
                check_tag_value(value)?;
            }
            check_metrics_finite(metrics)?;
            vec![EventPayload::VersionCreated {
                version: state.last_version + 1,
                source: source.clone(),
                run_id: run_id.clone(),
                description: description.clone(),
                tags: tags.clone(),
                metrics: metrics.clone(),
                signature: signature.clone(),
                input_example: input_example.clone(),
                artifact: artifact.clone(),
                run_evidence: run_evidence.clone(),
            }]
        }
        Command::UpdateVersion {
            version,
            description,
            ..
        } => {
            require_version(*version)?;
            check_text("description", description, MAX_DESCRIPTION_CHARS)?;
            vec![EventPayload::VersionDescriptionUpdated {
                version: *version,
                description: description.clone(),
            }]
        }
        Command::SetVersionTag {
            version,
            key,
            value,
            ..
        } => {
            require_version(*version)?;
            check_tag_value(value)?;
            vec![EventPayload::VersionTagSet {
                version: *version,
                key: key.clone(),
                value: value.clone(),
            }]
        }
        Command::DeleteVersionTag { version, key, .. } => {
            let v = require_version(*version)?;
            if !v.tags.contains_key(key) {
                return Err(DomainError::NotFound(format!(
                    "No tag with key '{}' on model version (name={name}, version={version})",
                    key.as_str()
                )));
            }
            vec![EventPayload::VersionTagDeleted {
                version: *version,
                key: key.clone(),
            }]
        }
        Command::TransitionStage {
            version,
            stage,
            comment,
            archive_existing_versions,
            ..
        } => transition(
            state,
            *version,
            *stage,
            comment,
            *archive_existing_versions,
            None,
        )?,
        Command::RollbackStage { stage, comment, .. } => rollback(state, *stage, comment)?,
        Command::SetAlias { alias, version, .. } => {
            require_version(*version)?;
            vec![EventPayload::AliasSet {
                alias: alias.clone(),
                version: *version,
                previous_version: state.aliases.get(alias).copied(),
            }]
        }
        Command::DeleteAlias { alias, .. } => {
            let version = state.aliases.get(alias).copied().ok_or_else(|| {
                DomainError::NotFound(format!(
                    "Registered model alias {alias} not found on model '{name}'"
                ))
            })?;
            vec![EventPayload::AliasDeleted {
                alias: alias.clone(),
                version,
            }]
        }
        Command::DeleteVersion { version, .. } => {
            require_version(*version)?;
            // Aliases must always point at a live version, so deleting a version first removes
            // the aliases that point at it, each as its own auditable event.
            let mut events: Vec<EventPayload> = state
                .aliases_of(*version)
                .into_iter()
                .map(|alias| EventPayload::AliasDeleted {
                    alias,
                    version: *version,
                })
                .collect();
            events.push(EventPayload::VersionDeleted { version: *version });
            events
        }
        Command::RecordVerification {
            version, outcome, ..
        } => {
            require_version(*version)?;
            match outcome {
                VerificationOutcome::Verified { digest, files } => {
                    vec![EventPayload::ArtifactVerified {
                        version: *version,
                        digest: digest.clone(),
                        files: *files,
                    }]
                }
                VerificationOutcome::Failed { failures } => {
                    vec![EventPayload::ArtifactVerificationFailed {
                        version: *version,
                        failures: failures.clone(),
                    }]
                }
            }
        }
        // run evidence (issue #16): a pending pin is completed once, never replaced, so a
        // pinned manifest stays what it was when first read.
        Command::PinRunArtifacts {
            version,
            artifact,
            attempts,
            ..
        } => {
            let v = require_version(*version)?;
            if v.run_pin.as_deref() != Some(crate::domain::events::RunEvidence::PENDING)
                || v.artifact.is_some()
            {
                return Err(DomainError::InvalidParameter(format!(
                    "Model Version (name={name}, version={version}) has no pending run pin"
                )));
            }
            if artifact.files.is_empty() {
                return Err(DomainError::InvalidParameter(
                    "a run pin needs at least one file".into(),
                ));
            }
            vec![EventPayload::RunArtifactsPinned {
                version: *version,
                artifact: artifact.clone(),
                attempts: *attempts,
            }]
        }
        Command::RecordMetrics {
            version, metrics, ..
        } => {
            require_version(*version)?;
            if metrics.is_empty() {
                return Err(DomainError::InvalidParameter(
                    "metrics must name at least one metric".into(),
                ));
            }
            if metrics.len() > MAX_RECORDED_METRICS {
                return Err(DomainError::InvalidParameter(format!(
                    "at most {MAX_RECORDED_METRICS} metrics may be recorded at once"
                )));
            }
            for metric in metrics.keys() {
                if metric.trim().is_empty() || metric.chars().any(char::is_control) {
                    return Err(DomainError::InvalidParameter(
                        "a metric name must be non-empty text without control characters".into(),
                    ));
                }
                check_text("metric name", metric, MAX_METRIC_NAME_CHARS)?;
            }
            check_metrics_finite(metrics)?;
            vec![EventPayload::MetricsRecorded {
                version: *version,
                metrics: metrics.clone(),
            }]
        }
        Command::RecordSignature { version, claim, .. } => {
            let v = require_version(*version)?;
            let Some(manifest) = &v.artifact else {
                return Err(DomainError::InvalidParameter(format!(
                    "version {version} has no recorded files yet (its run pin is pending, or it \
                     was registered without a manifest), so a signature cannot be compared"
                )));
            };
            let mut differences = crate::domain::signing::bind(claim, manifest);
            let status = if differences.is_empty() {
                SignatureStatus::Verified
            } else {
                SignatureStatus::Mismatch
            };
            let more = differences
                .len()
                .saturating_sub(crate::domain::signing::MAX_RECORDED_DIFFERENCES);
            differences.truncate(crate::domain::signing::MAX_RECORDED_DIFFERENCES);
            vec![EventPayload::SignatureRecorded {
                version: *version,
                status: status.as_str().to_string(),
                signer: claim.signer.clone(),
                statement_digest: claim.statement_digest.clone(),
                manifest_digest: manifest.digest.clone(),
                differences,
                more_differences: more as u64,
            }]
        }
        Command::RequestTransition {
            version,
            stage,
            comment,
            ..
        } => {
            let v = require_version(*version)?;
            if let Some(c) = comment {
                check_text("comment", c, MAX_COMMENT_CHARS)?;
            }
            if v.stage == *stage {
                return Err(WorkflowError::AlreadyInStage {
                    version: *version,
                    stage: *stage,
                }
                .into());
            }
            if let Some(open) = state.pending_request(*version, *stage) {
                return Err(WorkflowError::OpenRequestExists {
                    version: *version,
                    stage: *stage,
                    id: open.id.clone(),
                }
                .into());
            }
            let request = TransitionRequest::open(
                Opening {
                    id: ctx.new_id.clone(),
                    version: *version,
                    to_stage: *stage,
                    comment: comment.clone(),
                    binding: v.binding(),
                },
                &ctx.actor,
                ctx.now,
                ctx.request_lifetime,
            )?;
            vec![EventPayload::TransitionRequested {
                request_id: request.id,
                version: *version,
                to_stage: *stage,
                comment: comment.clone(),
                artifact_digest: request.binding.artifact_digest,
                verification: request.binding.verification,
                // Filled in by the service from the decision that allowed the request.
                policy_set_digest: String::new(),
                expires_at: request.expires_at,
            }]
        }
        Command::ApproveRequest {
            id,
            comment,
            archive_existing_versions,
            ..
        } => {
            let request = require_request(state, id)?;
            if let Some(c) = comment {
                check_text("comment", c, MAX_COMMENT_CHARS)?;
            }
            let binding = current_binding(state, request)?;
            let outcome = request.approve(&ctx.actor, ctx.now, &binding, ctx.approval_completes)?;
            let completes = outcome == ApprovalOutcome::ExecuteTransition;
            let mut events = vec![EventPayload::RequestApproved {
                request_id: id.clone(),
                version: request.version,
                comment: comment.clone(),
                approvals: u32::try_from(request.approvals.len() + 1).unwrap_or(u32::MAX),
                completes,
                policy_set_digest: String::new(),
            }];
            if completes {
                let transition_comment = comment.clone().or_else(|| request.comment.clone());
                events.extend(transition(
                    state,
                    request.version,
                    request.to_stage,
                    &transition_comment,
                    *archive_existing_versions,
                    Some(id.clone()),
                )?);
            }
            events
        }
        Command::RejectRequest { id, comment, .. } => {
            let request = require_request(state, id)?;
            if let Some(c) = comment {
                check_text("comment", c, MAX_COMMENT_CHARS)?;
            }
            let binding = current_binding(state, request)?;
            request.reject(&ctx.actor, ctx.now, &binding)?;
            vec![EventPayload::RequestRejected {
                request_id: id.clone(),
                version: request.version,
                comment: comment.clone(),
            }]
        }
        Command::CancelRequest { id, comment, .. } => {
            let request = require_request(state, id)?;
            if let Some(c) = comment {
                check_text("comment", c, MAX_COMMENT_CHARS)?;
            }
            request.cancel(&ctx.actor)?;
            vec![EventPayload::RequestCancelled {
                request_id: id.clone(),
                version: request.version,
                comment: comment.clone(),
            }]
        }
        Command::CloseStaleRequest { id, .. } => {
            let request = require_request(state, id)?;
            match stale(state, request, ctx.now) {
                Some(event) => vec![event],
                None => {
                    return Err(DomainError::InvalidParameter(format!(
                        "transition request '{id}' is not stale"
                    )));
                }
            }
        }
        Command::AddComment {
            version, comment, ..
        } => {
            require_version(*version)?;
            check_comment(comment)?;
            vec![EventPayload::CommentAdded {
                comment_id: ctx.new_id.clone(),
                version: *version,
                comment: comment.clone(),
            }]
        }
        Command::EditComment { id, comment, .. } => {
            let existing = require_own_comment(state, id, &ctx.actor)?;
            check_comment(comment)?;
            vec![EventPayload::CommentEdited {
                comment_id: id.clone(),
                version: existing.version,
                comment: comment.clone(),
            }]
        }
        Command::DeleteComment { id, .. } => {
            let existing = require_own_comment(state, id, &ctx.actor)?;
            vec![EventPayload::CommentDeleted {
                comment_id: id.clone(),
                version: existing.version,
            }]
        }
    };
    Ok(with_voided_requests(state, command, events, ctx))
}

/// The events of moving `version` to `stage`, archiving the stage's other versions when asked.
fn transition(
    state: &ModelState,
    version: u64,
    stage: Stage,
    comment: &Option<String>,
    archive_existing_versions: bool,
    request_id: Option<String>,
) -> Result<Vec<EventPayload>, DomainError> {
    let v = state.live_version(version).ok_or_else(|| {
        DomainError::NotFound(format!(
            "Model Version (name={}, version={version}) not found",
            state.name
        ))
    })?;
    if archive_existing_versions && !matches!(stage, Stage::Staging | Stage::Production) {
        return Err(DomainError::InvalidParameter(format!(
            "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are Staging, Production"
        )));
    }
    if let Some(c) = comment {
        check_text("comment", c, MAX_DESCRIPTION_CHARS)?;
    }
    let mut events = Vec::new();
    if archive_existing_versions {
        for other in state.versions_in_stage(stage) {
            if other != version {
                events.push(EventPayload::StageTransitioned {
                    version: other,
                    from: stage,
                    to: Stage::Archived,
                    comment: None,
                    reason: TransitionReason::ArchivedByPromotion {
                        promoted_version: version,
                    },
                    request_id: None,
                });
            }
        }
    }
    events.push(EventPayload::StageTransitioned {
        version,
        from: v.stage,
        to: stage,
        comment: comment.clone(),
        reason: TransitionReason::Requested,
        request_id,
    });
    Ok(events)
}

/// Returns `stage` to the version that held it before the current one. The current holder is
/// archived and the earlier one restored, in one batch, each with a reason naming the other.
fn rollback(
    state: &ModelState,
    stage: Stage,
    comment: &Option<String>,
) -> Result<Vec<EventPayload>, DomainError> {
    if !matches!(stage, Stage::Staging | Stage::Production) {
        return Err(DomainError::InvalidParameter(format!(
            "rollback applies to Staging or Production, not '{stage}'"
        )));
    }
    let current = state.latest_in_stage(stage).ok_or_else(|| {
        DomainError::InvalidParameter(format!(
            "no version of '{}' is in {stage}, so there is nothing to roll back",
            state.name
        ))
    })?;
    let entries = state
        .stage_entries
        .get(&stage)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let current_entry = entries
        .iter()
        .rposition(|v| *v == current.version)
        .unwrap_or(entries.len());
    let previous = entries[..current_entry]
        .iter()
        .rev()
        .copied()
        .find(|v| *v != current.version && state.live_version(*v).is_some())
        .ok_or_else(|| {
            DomainError::InvalidParameter(format!(
                "no earlier version of '{}' held {stage}, so there is nothing to roll back to",
                state.name
            ))
        })?;
    let previous_stage = state
        .live_version(previous)
        .map(|v| v.stage)
        .unwrap_or(Stage::None);
    Ok(vec![
        EventPayload::StageTransitioned {
            version: current.version,
            from: stage,
            to: Stage::Archived,
            comment: comment.clone(),
            reason: TransitionReason::RolledBack {
                restored_version: previous,
            },
            request_id: None,
        },
        EventPayload::StageTransitioned {
            version: previous,
            from: previous_stage,
            to: stage,
            comment: comment.clone(),
            reason: TransitionReason::Rollback {
                rolled_back_from: current.version,
            },
            request_id: None,
        },
    ])
}

mod workflow;

#[cfg(test)]
mod tests;
