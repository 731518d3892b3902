//! Unit tests of `decide`: each command against the states it may meet.

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

// --- approval workflow (issue #17) ---

fn person(name: &str) -> Actor {
    Actor {
        subject: name.into(),
        issuer: "https://idp.test".into(),
        display_name: None,
    }
}

fn ctx_for(name: &str, id: &str, completes: bool) -> DecideContext {
    DecideContext {
        actor: person(name),
        now: Utc::now(),
        new_id: id.into(),
        request_lifetime: approval::DEFAULT_REQUEST_LIFETIME,
        approval_completes: completes,
    }
}

/// Decides as `ctx`'s actor and folds the events with that actor, as the service does.
fn run(
    state: &ModelState,
    command: Command,
    ctx: &DecideContext,
) -> Result<(Vec<EventPayload>, ModelState), DomainError> {
    let events = decide_in(Some(state), &command, ctx)?;
    let mut next = state.clone();
    for e in &events {
        next.apply(e, ctx.now, &ctx.actor);
    }
    Ok((events, next))
}

fn request_staging() -> Command {
    Command::RequestTransition {
        name: name(),
        version: 1,
        stage: Stage::Staging,
        comment: Some("ready".into()),
    }
}

fn approve(id: &str) -> Command {
    Command::ApproveRequest {
        name: name(),
        id: id.into(),
        comment: None,
        archive_existing_versions: false,
    }
}

#[test]
fn one_open_request_per_version_and_stage() {
    let state = given(&[create(), version()]).unwrap();
    let (events, state) = run(&state, request_staging(), &ctx_for("ci", "r1", false)).unwrap();
    assert!(matches!(
        &events[..],
        [EventPayload::TransitionRequested { request_id, to_stage: Stage::Staging, .. }]
            if request_id == "r1"
    ));
    let again = run(&state, request_staging(), &ctx_for("ci", "r2", false));
    assert!(matches!(
        again,
        Err(DomainError::Workflow(
            WorkflowError::OpenRequestExists { .. }
        ))
    ));
}

#[test]
fn the_completing_approval_executes_the_transition_in_the_same_batch() {
    let state = given(&[create(), version()]).unwrap();
    let (_, state) = run(&state, request_staging(), &ctx_for("ci", "r1", false)).unwrap();
    let own = run(&state, approve("r1"), &ctx_for("ci", "x", true));
    assert!(matches!(
        own,
        Err(DomainError::Workflow(WorkflowError::OwnRequest))
    ));
    let (events, state) = run(&state, approve("r1"), &ctx_for("rita", "x", true)).unwrap();
    assert!(matches!(
        &events[..],
        [
            EventPayload::RequestApproved { completes: true, approvals: 1, .. },
            EventPayload::StageTransitioned { to: Stage::Staging, request_id: Some(r), .. },
        ] if r == "r1"
    ));
    assert_eq!(state.live_version(1).map(|v| v.stage), Some(Stage::Staging));
    assert_eq!(
        state.requests["r1"].status,
        approval::RequestStatus::Approved
    );
    let late = run(&state, approve("r1"), &ctx_for("rob", "x", true));
    assert!(matches!(
        late,
        Err(DomainError::Workflow(WorkflowError::AlreadyFinal(_)))
    ));
}

#[test]
fn an_approval_the_policies_do_not_let_complete_waits_for_another_approver() {
    let state = given(&[create(), version()]).unwrap();
    let (_, state) = run(&state, request_staging(), &ctx_for("ci", "r1", false)).unwrap();
    let (events, state) = run(&state, approve("r1"), &ctx_for("rita", "x", false)).unwrap();
    assert_eq!(events.len(), 1, "no transition yet");
    let twice = run(&state, approve("r1"), &ctx_for("rita", "x", true));
    assert!(matches!(
        twice,
        Err(DomainError::Workflow(WorkflowError::AlreadyApproved(_)))
    ));
    let (events, _) = run(&state, approve("r1"), &ctx_for("rob", "x", true)).unwrap();
    assert!(matches!(
        events[0],
        EventPayload::RequestApproved {
            approvals: 2,
            completes: true,
            ..
        }
    ));
}

#[test]
fn a_verification_change_voids_open_requests_in_the_same_batch() {
    let state = given(&[create(), version()]).unwrap();
    let (_, state) = run(&state, request_staging(), &ctx_for("ci", "r1", false)).unwrap();
    let verify = Command::RecordVerification {
        name: name(),
        version: 1,
        outcome: VerificationOutcome::Verified {
            digest: "sha256:x".into(),
            files: 1,
        },
    };
    let (events, state) = run(&state, verify, &ctx_for("ci", "x", false)).unwrap();
    assert!(matches!(
        &events[..],
        [
            EventPayload::ArtifactVerified { .. },
            EventPayload::RequestVoided { .. }
        ]
    ));
    assert_eq!(state.requests["r1"].status, approval::RequestStatus::Voided);
    let approve_void = run(&state, approve("r1"), &ctx_for("rita", "x", true));
    assert!(matches!(
        approve_void,
        Err(DomainError::Workflow(WorkflowError::AlreadyFinal(
            approval::RequestStatus::Voided
        )))
    ));
}

#[test]
fn comments_are_changed_only_by_their_author() {
    let state = given(&[create(), version()]).unwrap();
    let add = Command::AddComment {
        name: name(),
        version: 1,
        comment: "looks good".into(),
    };
    let (_, state) = run(&state, add, &ctx_for("ci", "c1", false)).unwrap();
    assert_eq!(state.comments["c1"].comment, "looks good");
    let edit = |text: &str| Command::EditComment {
        name: name(),
        id: "c1".into(),
        comment: text.into(),
    };
    assert!(matches!(
        run(&state, edit("mine now"), &ctx_for("rita", "x", false)),
        Err(DomainError::Workflow(WorkflowError::NotAuthor))
    ));
    assert!(matches!(
        run(&state, edit(" "), &ctx_for("ci", "x", false)),
        Err(DomainError::InvalidParameter(_))
    ));
    let (_, state) = run(&state, edit("better"), &ctx_for("ci", "x", false)).unwrap();
    assert_eq!(state.comments["c1"].comment, "better");
    let delete = Command::DeleteComment {
        name: name(),
        id: "c1".into(),
    };
    let (_, state) = run(&state, delete, &ctx_for("ci", "x", false)).unwrap();
    assert!(state.comments.is_empty());
}
