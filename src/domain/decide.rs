//! `decide`: the one function that turns a command into events, enforcing every invariant.
//!
//! It sees one model's state (or `None` when the model does not exist yet) and returns the
//! events to append, or a [`DomainError`]. It does no I/O, so its rules are tested below with
//! given/when/then cases and no database. Cross-model rules (a name is unique among live models)
//! are checked by the service before calling it and backed by a unique index in the store.

use super::command::{Command, VerificationOutcome};
use super::events::{EventPayload, TransitionReason};
use super::names::{MAX_TAG_VALUE_CHARS, Stage};
use super::signing::SignatureStatus;
use super::state::ModelState;

/// Descriptions are free text but bounded, so one request cannot bloat every later snapshot.
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;
/// Sources are URIs; MLflow's columns hold 500 characters, we allow more but not unbounded.
pub const MAX_SOURCE_CHARS: usize = 4_096;
/// Metrics one RecordMetrics command may carry; an evaluation reports a handful, and the
/// bound keeps one request from bloating the version's row and every later snapshot.
pub const MAX_RECORDED_METRICS: usize = 100;
/// MLflow's own limit for a metric key.
pub const MAX_METRIC_NAME_CHARS: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
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

/// Turns a command into the events that record it.
pub fn decide(
    state: Option<&ModelState>,
    command: &Command,
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
                "Registered model (name={name}) already exists"
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
        } => {
            let v = require_version(*version)?;
            if *archive_existing_versions && !matches!(stage, Stage::Staging | Stage::Production) {
                return Err(DomainError::InvalidParameter(format!(
                    "Model version transition cannot archive existing model versions because '{stage}' is not an Active stage. Valid stages are Staging, Production"
                )));
            }
            if let Some(c) = comment {
                check_text("comment", c, MAX_DESCRIPTION_CHARS)?;
            }
            let mut events = Vec::new();
            if *archive_existing_versions {
                for other in state.versions_in_stage(*stage) {
                    if other != *version {
                        events.push(EventPayload::StageTransitioned {
                            version: other,
                            from: *stage,
                            to: Stage::Archived,
                            comment: None,
                            reason: TransitionReason::ArchivedByPromotion {
                                promoted_version: *version,
                            },
                        });
                    }
                }
            }
            events.push(EventPayload::StageTransitioned {
                version: *version,
                from: v.stage,
                to: *stage,
                comment: comment.clone(),
                reason: TransitionReason::Requested,
            });
            events
        }
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
    };
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
        },
        EventPayload::StageTransitioned {
            version: previous,
            from: previous_stage,
            to: stage,
            comment: comment.clone(),
            reason: TransitionReason::Rollback {
                rolled_back_from: current.version,
            },
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::Actor;
    use crate::domain::names::{AliasName, ModelName, TagKey};
    use chrono::Utc;
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn name() -> ModelName {
        ModelName::parse("churn").unwrap()
    }

    /// Given the commands, returns the state they produce (each must succeed).
    fn given(commands: &[Command]) -> Option<ModelState> {
        let mut state: Option<ModelState> = None;
        for command in commands {
            let events = decide(state.as_ref(), command).expect("given command must succeed");
            for e in &events {
                apply(&mut state, e);
            }
        }
        state
    }

    fn apply(state: &mut Option<ModelState>, e: &EventPayload) {
        let actor = Actor::system();
        match state {
            None => *state = ModelState::create(Uuid::now_v7(), e, Utc::now(), &actor),
            Some(s) => s.apply(e, Utc::now(), &actor),
        }
    }

    fn when(
        state: &Option<ModelState>,
        command: Command,
    ) -> Result<(Vec<EventPayload>, ModelState), DomainError> {
        let events = decide(state.as_ref(), &command)?;
        let mut next = state.clone();
        for e in &events {
            apply(&mut next, e);
        }
        Ok((events, next.expect("state exists")))
    }

    fn create() -> Command {
        Command::CreateModel {
            name: name(),
            description: String::new(),
            tags: BTreeMap::new(),
        }
    }

    fn version() -> Command {
        Command::CreateVersion {
            name: name(),
            source: "s3://bucket/m".into(),
            run_id: None,
            description: String::new(),
            tags: BTreeMap::new(),
            metrics: BTreeMap::new(),
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        }
    }

    fn transition(version: u64, stage: Stage, archive: bool) -> Command {
        Command::TransitionStage {
            name: name(),
            version,
            stage,
            comment: None,
            archive_existing_versions: archive,
        }
    }

    #[test]
    fn creating_an_existing_model_is_refused() {
        let state = given(&[create()]);
        assert!(matches!(
            when(&state, create()),
            Err(DomainError::AlreadyExists(_))
        ));
    }

    #[test]
    fn commands_on_a_missing_or_deleted_model_are_not_found() {
        assert!(matches!(
            when(&None, version()),
            Err(DomainError::NotFound(_))
        ));
        let deleted = given(&[create(), Command::DeleteModel { name: name() }]);
        assert!(matches!(
            when(&deleted, version()),
            Err(DomainError::NotFound(_))
        ));
        // A deleted model's name can be registered again.
        assert!(when(&deleted, create()).is_ok());
    }

    #[test]
    fn version_numbers_are_never_reused_after_deletion() {
        let state = given(&[
            create(),
            version(),
            version(),
            Command::DeleteVersion {
                name: name(),
                version: 2,
            },
        ]);
        let (events, next) = when(&state, version()).unwrap();
        assert!(matches!(
            events[0],
            EventPayload::VersionCreated { version: 3, .. }
        ));
        assert_eq!(next.last_version, 3);
    }

    #[test]
    fn archive_existing_versions_leaves_one_version_in_the_stage() {
        let state = given(&[
            create(),
            version(),
            version(),
            version(),
            transition(1, Stage::Production, false),
            transition(2, Stage::Production, false),
        ]);
        assert_eq!(
            state.as_ref().unwrap().versions_in_stage(Stage::Production),
            vec![1, 2]
        );
        let (events, next) = when(&state, transition(3, Stage::Production, true)).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(next.versions_in_stage(Stage::Production), vec![3]);
        assert_eq!(next.versions_in_stage(Stage::Archived), vec![1, 2]);
    }

    #[test]
    fn archive_existing_versions_needs_an_active_stage() {
        let state = given(&[create(), version()]);
        assert!(matches!(
            when(&state, transition(1, Stage::Archived, true)),
            Err(DomainError::InvalidParameter(_))
        ));
    }

    #[test]
    fn transitions_of_unknown_or_deleted_versions_are_not_found() {
        let state = given(&[
            create(),
            version(),
            Command::DeleteVersion {
                name: name(),
                version: 1,
            },
        ]);
        assert!(matches!(
            when(&state, transition(1, Stage::Staging, false)),
            Err(DomainError::NotFound(_))
        ));
        assert!(matches!(
            when(&state, transition(7, Stage::Staging, false)),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn aliases_point_only_at_live_versions_and_go_with_their_version() {
        let champion = AliasName::parse("champion").unwrap();
        let set = |v| Command::SetAlias {
            name: name(),
            alias: champion.clone(),
            version: v,
        };
        let state = given(&[create(), version(), version(), set(1)]);
        let (events, moved) = when(&state, set(2)).unwrap();
        assert!(matches!(
            events[0],
            EventPayload::AliasSet {
                previous_version: Some(1),
                version: 2,
                ..
            }
        ));
        assert_eq!(moved.aliases.get(&champion), Some(&2));
        assert!(matches!(
            when(&state, set(9)),
            Err(DomainError::NotFound(_))
        ));

        let (events, after_delete) = when(
            &Some(moved),
            Command::DeleteVersion {
                name: name(),
                version: 2,
            },
        )
        .unwrap();
        assert!(matches!(
            events[0],
            EventPayload::AliasDeleted { version: 2, .. }
        ));
        assert!(after_delete.aliases.is_empty());
    }

    #[test]
    fn deleting_a_missing_alias_or_tag_is_not_found() {
        let state = given(&[create(), version()]);
        let alias = AliasName::parse("ghost").unwrap();
        assert!(matches!(
            when(
                &state,
                Command::DeleteAlias {
                    name: name(),
                    alias
                }
            ),
            Err(DomainError::NotFound(_))
        ));
        let key = TagKey::parse("k").unwrap();
        assert!(matches!(
            when(&state, Command::DeleteModelTag { name: name(), key }),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn rollback_restores_the_previous_holder_of_the_stage() {
        let state = given(&[
            create(),
            version(),
            version(),
            version(),
            transition(1, Stage::Production, true),
            transition(2, Stage::Production, true),
        ]);
        let rollback = Command::RollbackStage {
            name: name(),
            stage: Stage::Production,
            comment: Some("bad p99".into()),
        };
        let (events, next) = when(&state, rollback.clone()).unwrap();
        assert_eq!(next.versions_in_stage(Stage::Production), vec![1]);
        assert_eq!(next.live_version(2).unwrap().stage, Stage::Archived);
        assert!(events.iter().any(|e| matches!(
            e,
            EventPayload::StageTransitioned {
                version: 1,
                reason: TransitionReason::Rollback {
                    rolled_back_from: 2
                },
                ..
            }
        )));
        // Rolling back again returns Production to the version that held it before version 1's
        // return: version 2. Rollback follows the stage's history, it is not a stack.
        let (_, again) = when(&Some(next), rollback).unwrap();
        assert_eq!(again.versions_in_stage(Stage::Production), vec![2]);
    }

    #[test]
    fn rollback_skips_deleted_versions_and_needs_a_holder() {
        let state = given(&[
            create(),
            version(),
            version(),
            version(),
            transition(1, Stage::Production, true),
            transition(2, Stage::Production, true),
            transition(3, Stage::Production, true),
            Command::DeleteVersion {
                name: name(),
                version: 2,
            },
        ]);
        let rollback = Command::RollbackStage {
            name: name(),
            stage: Stage::Production,
            comment: None,
        };
        let (_, next) = when(&state, rollback).unwrap();
        assert_eq!(next.versions_in_stage(Stage::Production), vec![1]);

        let empty = given(&[create(), version()]);
        let rollback = Command::RollbackStage {
            name: name(),
            stage: Stage::Production,
            comment: None,
        };
        assert!(matches!(
            when(&empty, rollback),
            Err(DomainError::InvalidParameter(_))
        ));
    }

    #[test]
    fn recorded_metrics_replace_by_name_and_bad_ones_write_nothing() {
        let state = given(&[create(), version()]);
        let record = |pairs: &[(&str, f64)], version: u64| Command::RecordMetrics {
            name: name(),
            version,
            metrics: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let (_, next) = when(&state, record(&[("f1", 0.7), ("auc", 0.8)], 1)).unwrap();
        let (_, next) = when(&Some(next), record(&[("f1", 0.91)], 1)).unwrap();
        let metrics = &next.live_version(1).unwrap().metrics;
        assert_eq!(metrics.get("f1"), Some(&0.91));
        assert_eq!(metrics.get("auc"), Some(&0.8));

        let too_many: Vec<(String, f64)> = (0..=MAX_RECORDED_METRICS)
            .map(|i| (format!("m{i}"), 1.0))
            .collect();
        let too_many: Vec<(&str, f64)> = too_many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        for bad in [
            record(&[], 1),
            record(&[("f1", f64::INFINITY)], 1),
            record(&[(" ", 1.0)], 1),
            record(&[("f\u{0}1", 1.0)], 1),
            record(&too_many, 1),
        ] {
            assert!(
                matches!(when(&state, bad), Err(DomainError::InvalidParameter(_))),
                "accepted a bad RecordMetrics"
            );
        }
        assert!(matches!(
            when(&state, record(&[("f1", 0.9)], 2)),
            Err(DomainError::NotFound(_))
        ));
    }

    #[test]
    fn bad_values_are_invalid_parameters() {
        let state = given(&[create()]);
        let mut metrics = BTreeMap::new();
        metrics.insert("f1".to_string(), f64::NAN);
        let bad_metric = Command::CreateVersion {
            name: name(),
            source: "x".into(),
            run_id: None,
            description: String::new(),
            tags: BTreeMap::new(),
            metrics,
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        };
        assert!(matches!(
            when(&state, bad_metric),
            Err(DomainError::InvalidParameter(_))
        ));
        let empty_source = Command::CreateVersion {
            name: name(),
            source: " ".into(),
            run_id: None,
            description: String::new(),
            tags: BTreeMap::new(),
            metrics: BTreeMap::new(),
            signature: None,
            input_example: None,
            artifact: None,
            run_evidence: None,
        };
        assert!(matches!(
            when(&state, empty_source),
            Err(DomainError::InvalidParameter(_))
        ));
        let rename_to_self = Command::RenameModel {
            name: name(),
            new_name: name(),
        };
        assert!(matches!(
            when(&state, rename_to_self),
            Err(DomainError::InvalidParameter(_))
        ));
    }
}
