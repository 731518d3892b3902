//! The write path: load → decide → authorize → append (+ project + outbox).
//!
//! Every write, whether it came through the native API, the MLflow-compatible API or the CLI,
//! is a [`Command`] executed here. Loading, deciding and authorizing happen outside the
//! database transaction; the store's `append` is the single transaction that records the events,
//! rewrites projections and fills the outbox.
//!
//! Commands for one model are queued ([`ModelQueues`](super::per_model::ModelQueues)): each is decided against the state the
//! previous one left, so 64 clients creating versions of one model get versions 1..64 and 64
//! successes instead of racing for the same stream version. Commands for different models still
//! share group commits. A race with another process writing the same database is still possible
//! and is retried from the load (bounded); 409 is left for a real `If-Match` mismatch or a retry
//! budget exhausted by other processes.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::domain::chain::truncate_to_micros;
use crate::domain::events::{EventPayload, NewEvent};
use crate::domain::state::{ModelState, fold};
use crate::domain::{Action, Command, DecideContext, DomainError, Stage, decide_in};
use crate::policy::RenameFacts;
use crate::policy::RequestFacts;
use crate::store::{AppendBatch, IdempotencyRecord, StoreError};

use super::access::{Change, Resource};
use super::{
    AuthzQuestion, Caller, IdempotencyRequest, Missing, Outcome, RequestMeta, Service,
    ServiceError, StoredResponse,
};
use crate::tracking::evidence;

/// How long, and at least how many times, a command is re-decided after losing a race before
/// the caller gets 409. Races are lost only to another process writing the same model (this
/// process queues its own commands per model). A count alone is not enough: while the other
/// process writes one command after another, its transaction holds the model's row most of the
/// time, and a retry only wins in the gap between two of them, so under load eight quick
/// attempts can all fall inside the other's transactions. Retrying for a bounded time with
/// short pauses lets the retry find a gap.
const MIN_ATTEMPTS: u32 = 8;
const RETRY_BUDGET: Duration = Duration::from_secs(3);

/// Renders an outcome into the answer stored with an idempotency key.
pub type Render<'a> = dyn Fn(&Outcome) -> StoredResponse + Send + Sync + 'a;
/// An idempotency key with the renderer of its stored answer.
type IdempotencyHook<'a> = (&'a IdempotencyRequest, &'a Render<'a>);

impl Service {
    /// Attaches run evidence to a `CreateVersion` that names a run or logged model, and makes
    /// the run's metrics the version's (they win over caller-supplied ones: the gate must read
    /// what the run recorded). Callers the policy would refuse anyway are not looked up, so
    /// the upstream cannot be probed through registration errors.
    async fn with_run_evidence(
        &self,
        caller: &Caller,
        mut command: Command,
    ) -> Result<Command, ServiceError> {
        let Some(upstream) = &self.tracking else {
            return Ok(command);
        };
        let Command::CreateVersion {
            name,
            source,
            run_id,
            metrics,
            run_evidence,
            artifact,
            ..
        } = &mut command
        else {
            return Ok(command);
        };
        if !evidence::wanted(source, run_id.as_deref()) {
            return Ok(command);
        }
        let current = self
            .store
            .load_model(name.as_str())
            .await
            .map_err(ServiceError::Store)?;
        let decision = self.authorizer.authorize(&AuthzQuestion {
            caller,
            action: Action::CreateVersion,
            model_name: name.as_str(),
            model: current.as_ref(),
            version: None,
            from_stage: None,
            to_stage: None,
            comment: None,
            rename: None,
            request: None,
        });
        if !decision.allowed {
            // The command path records and answers the denial.
            return Ok(command);
        }
        let mut found = evidence::capture(upstream, source, run_id.as_deref())
            .await
            .map_err(|e| DomainError::InvalidParameter(e.to_string()))?;
        // Run pinning (issue #16): a version that brings no manifest of its own gets the run's.
        if artifact.is_none() {
            *artifact = super::run_pins::pin_at_registration(
                upstream,
                self.run_stores.as_ref(),
                &mut found,
            )
            .await?;
        }
        if run_id.is_none() && !found.run_id.is_empty() {
            *run_id = Some(found.run_id.clone());
        }
        metrics.extend(found.metrics.iter().map(|(k, v)| (k.clone(), *v)));
        *run_evidence = Some(found);
        Ok(command)
    }

    /// Runs a command through the whole path.
    pub async fn execute(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: Command,
    ) -> Result<Outcome, ServiceError> {
        let command = self.with_run_evidence(caller, command).await?;
        let outcome = self
            .run(caller, meta, &command, None)
            .await
            .map(|(outcome, _)| outcome)?;
        self.queue_pending_pins(&outcome);
        Ok(outcome)
    }

    /// Hands versions just registered with a pending run pin to the background pinner.
    fn queue_pending_pins(&self, outcome: &Outcome) {
        for event in &outcome.events {
            if event.event_type != "VersionCreated" {
                continue;
            }
            let Some(number) = event.payload["version"].as_u64() else {
                continue;
            };
            if let Some(v) = outcome.state.live_version(number)
                && v.run_pin.as_deref() == Some(crate::domain::events::RunEvidence::PENDING)
                && let Some(location) = &v.run_location
            {
                self.queue_pin(outcome.state.name.as_str(), number, location);
            }
        }
    }

    /// Runs a deletion of a tag or alias, where deleting something already absent succeeds
    /// without writing anything (MLflow's semantics). The caller must still be allowed the
    /// action on the model as it is, and a refusal is recorded like any other; a missing model
    /// or version is still an error. Returns `None` when there was nothing to delete.
    pub async fn execute_deletion(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: Command,
    ) -> Result<Option<Outcome>, ServiceError> {
        let tolerated = matches!(
            command,
            Command::DeleteModelTag { .. }
                | Command::DeleteVersionTag { .. }
                | Command::DeleteAlias { .. }
        );
        let name = command.model_name().clone();
        let version = command.version();
        let action = command.action();
        match self.execute(caller, meta, command).await {
            Err(ServiceError::Domain(DomainError::NotFound(_))) if tolerated => {
                let model = self
                    .check_current(caller, action, &name, version)
                    .await?
                    .filter(|m| !m.deleted);
                let Some(model) = model else {
                    return Err(ServiceError::NotFound(Missing::Model {
                        name: name.to_string(),
                    }));
                };
                if let Some(version) = version
                    && model.live_version(version).is_none()
                {
                    return Err(ServiceError::NotFound(Missing::Version {
                        name: name.to_string(),
                        version,
                    }));
                }
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Runs a command at most once per idempotency key: a retry gets the first answer back and
    /// writes nothing. `render` turns the outcome into the answer that is stored with it.
    pub async fn execute_idempotent(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: Command,
        idempotency: IdempotencyRequest,
        render: &(dyn Fn(&Outcome) -> StoredResponse + Send + Sync),
    ) -> Result<StoredResponse, ServiceError> {
        if let Some(found) = self.replay(&idempotency).await? {
            return Ok(found);
        }
        let command = self.with_run_evidence(caller, command).await?;
        match self
            .run(caller, meta, &command, Some((&idempotency, render)))
            .await
        {
            Ok((outcome, response)) => {
                self.queue_pending_pins(&outcome);
                Ok(response.unwrap_or(StoredResponse {
                    status: 200,
                    body: "{}".into(),
                }))
            }
            // Lost a race against a concurrent retry with the same key: its answer is ours.
            Err(ServiceError::Conflict(attempts)) => match self.replay(&idempotency).await? {
                Some(found) => Ok(found),
                None => Err(ServiceError::Conflict(attempts)),
            },
            Err(e) => Err(e),
        }
    }

    async fn replay(
        &self,
        idempotency: &IdempotencyRequest,
    ) -> Result<Option<StoredResponse>, ServiceError> {
        let found = self
            .store
            .find_idempotency(&idempotency.scope, &idempotency.key)
            .await
            .map_err(ServiceError::Store)?;
        match found {
            Some(record) if record.request_hash != idempotency.request_hash => {
                Err(ServiceError::IdempotencyMismatch(idempotency.key.clone()))
            }
            Some(record) => Ok(Some(StoredResponse {
                status: record.status,
                body: record.body,
            })),
            None => Ok(None),
        }
    }

    async fn run(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &Command,
        idempotency: Option<IdempotencyHook<'_>>,
    ) -> Result<(Outcome, Option<StoredResponse>), ServiceError> {
        // Held until the append is answered: the next command for this model is decided
        // against the state this one leaves.
        let _turn = self.queues.wait_turn(command.model_name().as_str()).await;
        let started = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            if attempt > 0 {
                // Spread retries so a burst of writers on one model does not collide in
                // lockstep; short pauses (at most 15 ms), so the gap after another process's
                // commit is found quickly.
                let jitter = rand::random::<u64>() % (2 << attempt.min(3));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            let budget_left = attempt + 1 < MIN_ATTEMPTS || started.elapsed() < RETRY_BUDGET;
            attempt += 1;
            match self.attempt(caller, meta, command, idempotency).await {
                // Only another process can have advanced the stream: decide again.
                Err(ServiceError::Store(StoreError::Conflict { .. })) if budget_left => continue,
                Err(ServiceError::Store(StoreError::Conflict { .. })) => {
                    return Err(ServiceError::Conflict(attempt));
                }
                // A name taken between our check and our append: decide again, which now sees it.
                Err(ServiceError::Store(StoreError::Unique(_))) if attempt < MIN_ATTEMPTS => {
                    continue;
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &Command,
        idempotency: Option<IdempotencyHook<'_>>,
    ) -> Result<(Outcome, Option<StoredResponse>), ServiceError> {
        let prepared = self.prepare(caller, meta, command, idempotency).await?;
        let stored = self
            .appender
            .append(prepared.batch)
            .await
            .map_err(ServiceError::Store)?;
        self.states
            .put(prepared.state.clone(), prepared.snapshot_version);
        Ok((
            Outcome {
                state: prepared.state,
                events: stored,
            },
            prepared.response,
        ))
    }

    /// Decides and authorizes a command against the current state, returning what to append
    /// without appending it (the first half of [`Service::execute`]; the store's
    /// `append_group` tests use it to build groups).
    pub async fn prepare_batch(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &Command,
    ) -> Result<AppendBatch, ServiceError> {
        Ok(self.prepare(caller, meta, command, None).await?.batch)
    }

    async fn prepare(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &Command,
        idempotency: Option<IdempotencyHook<'_>>,
    ) -> Result<Prepared, ServiceError> {
        let name = command.model_name().as_str();
        // A cached state may be behind another process's write. An allowed command decided on
        // it is caught by the append's optimistic check and retried; a refusal or an error is
        // not, so it is only final when decided on the stored state: decided on the cache, it
        // is decided again from the store (refusals are rare, so this costs little) and only
        // that second refusal is recorded. An `If-Match` mismatch with the cache, likewise,
        // is confirmed with the store before it becomes a 412.
        let cached = self.states.take(name).filter(|(state, _)| {
            meta.if_match
                .is_none_or(|expected| state.stream_version == expected)
        });
        if let Some((state, snapshot_version)) = cached {
            match self
                .prepare_on(
                    caller,
                    meta,
                    command,
                    idempotency,
                    (Some(state), Some(snapshot_version)),
                    false,
                )
                .await
            {
                Err(ServiceError::Denied(_) | ServiceError::Domain(_)) => {}
                done => return done,
            }
        }
        let stored = self.load_for_command(name).await?;
        self.prepare_on(caller, meta, command, idempotency, stored, true)
            .await
    }

    /// [`Service::prepare`] on a given state: `(state, version of its stored snapshot)`, both
    /// `None` for a model the store does not have yet (its first snapshot is written with it).
    async fn prepare_on(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &Command,
        idempotency: Option<IdempotencyHook<'_>>,
        (current, snapshot_version): (Option<ModelState>, Option<i64>),
        record_refusal: bool,
    ) -> Result<Prepared, ServiceError> {
        let name = command.model_name().as_str();
        if let (Some(expected), Some(state)) = (meta.if_match, current.as_ref())
            && state.stream_version != expected
        {
            return Err(ServiceError::PreconditionFailed {
                name: name.to_string(),
                expected,
                actual: state.stream_version,
            });
        }
        let rename = match (command, current.as_ref()) {
            (Command::RenameModel { new_name, .. }, Some(state)) => {
                Some(self.rename_facts(state, new_name).await?)
            }
            _ => None,
        };
        let now = truncate_to_micros(Utc::now());
        // Approval workflow (#17): the request (or comment) a command names by id decides which
        // version the policies see, and the request's facts are their `context.request`.
        let workflow = WorkflowFacts::of(command, current.as_ref(), &caller.actor, now);
        // Whether this approval may complete its request is the policies' answer (the N-of-M
        // rules are written there): ask with executes=true first, quietly; if that is refused,
        // the approval may still count towards a later one (executes=false), and only that
        // refusal is final.
        let mut pre_decision = None;
        let mut approval_completes = false;
        if let (Command::ApproveRequest { .. }, Some(facts)) = (command, workflow.request.as_ref())
        {
            let resource = Resource::current(name, workflow.version, current.as_ref());
            let change = |request| Change {
                from: workflow.from_stage,
                to: Some(facts.to_stage),
                comment: None,
                rename: None,
                request,
            };
            let completing = RequestFacts {
                executes: true,
                ..facts.clone()
            };
            match self
                .check_change(
                    caller,
                    Action::ApproveTransition,
                    resource,
                    change(Some(&completing)),
                    meta.request_id.as_deref(),
                    false,
                )
                .await
            {
                Ok(decision) => {
                    approval_completes = true;
                    pre_decision = Some(decision);
                }
                Err(ServiceError::Denied(_)) => {
                    let decision = self
                        .check_change(
                            caller,
                            Action::ApproveTransition,
                            resource,
                            change(Some(facts)),
                            meta.request_id.as_deref(),
                            record_refusal,
                        )
                        .await?;
                    pre_decision = Some(decision);
                }
                Err(e) => return Err(e),
            }
        }
        let ctx = DecideContext {
            actor: caller.actor.clone(),
            now,
            new_id: Uuid::now_v7().to_string(),
            request_lifetime: self.request_lifetime(),
            approval_completes,
        };
        let mut payloads = decide_in(current.as_ref(), command, &ctx)?;
        if let Some((facts, previous_holder)) = &rename {
            // `decide` cannot see the name's history; the event says who answered under the
            // name before, so subscribers can tell a different model now answers.
            for payload in &mut payloads {
                if let EventPayload::ModelRenamed {
                    replaces_model_id, ..
                } = payload
                {
                    *replaces_model_id = previous_holder.clone();
                }
            }
            debug_assert_eq!(facts.new_name_used_before, previous_holder.is_some());
        }

        let (from_stage, to_stage, comment) = match command {
            Command::TransitionStage {
                version,
                stage,
                comment,
                ..
            } => (
                current
                    .as_ref()
                    .and_then(|s| s.live_version(*version))
                    .map(|v| v.stage),
                Some(*stage),
                comment.as_deref(),
            ),
            Command::RollbackStage { stage, comment, .. } => {
                (None, Some(*stage), comment.as_deref())
            }
            Command::RequestTransition { comment, .. }
            | Command::ApproveRequest { comment, .. }
            | Command::RejectRequest { comment, .. }
            | Command::CancelRequest { comment, .. } => (
                workflow.from_stage,
                workflow.request.as_ref().map(|r| r.to_stage),
                comment.as_deref(),
            ),
            Command::CloseStaleRequest { .. } => (
                workflow.from_stage,
                workflow.request.as_ref().map(|r| r.to_stage),
                None,
            ),
            _ => (None, None, None),
        };
        // Rollback's target version is only known after decide: authorize against it.
        let version = match command {
            Command::RollbackStage { .. } => payloads.iter().rev().find_map(|p| p.version()),
            _ => workflow.version.or(command.version()),
        };
        let change = Change {
            from: from_stage,
            to: to_stage,
            comment,
            rename: rename.as_ref().map(|(facts, _)| facts),
            request: workflow.request.as_ref(),
        };
        let mut decision = match pre_decision {
            Some(decision) => decision,
            None => {
                self.check_change(
                    caller,
                    command.action(),
                    Resource::current(name, version, current.as_ref()),
                    change,
                    meta.request_id.as_deref(),
                    record_refusal,
                )
                .await?
            }
        };
        // The approval that completes a request executes a transition, which must pass the
        // transition's own authorization too, for the approver; both decisions are recorded.
        let executes = payloads.iter().any(|p| {
            matches!(
                p,
                EventPayload::StageTransitioned {
                    request_id: Some(_),
                    ..
                }
            )
        });
        if executes {
            let transition = self
                .check_change(
                    caller,
                    Action::TransitionStage,
                    Resource::current(name, version, current.as_ref()),
                    Change {
                        request: None,
                        ..change
                    },
                    meta.request_id.as_deref(),
                    record_refusal,
                )
                .await?;
            if let serde_json::Value::Object(record) = &mut decision.record {
                record.insert("transition".into(), transition.record);
            }
        }
        // Requests and approvals say which policy set they were decided under.
        let digest = decision.record["policy_set_digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for payload in &mut payloads {
            if let EventPayload::TransitionRequested {
                policy_set_digest, ..
            }
            | EventPayload::RequestApproved {
                policy_set_digest, ..
            } = payload
            {
                policy_set_digest.clone_from(&digest);
            }
        }

        let stream_id = current
            .as_ref()
            .map(|s| s.model_id)
            .unwrap_or_else(Uuid::now_v7);
        let expected_version = current.as_ref().map(|s| s.stream_version).unwrap_or(0);
        let mut state = current;
        let mut events = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            state = fold(state, stream_id, &payload, now, &caller.actor);
            events.push(NewEvent {
                event_id: Uuid::now_v7(),
                stream_version: expected_version + 1 + i as i64,
                payload,
                occurred_at: now,
            });
        }
        let Some(state) = state else {
            return Err(
                DomainError::NotFound(format!("Registered model '{name}' does not exist")).into(),
            );
        };
        // A new model's first snapshot is written with it; after that, every SNAPSHOT_EVERY
        // events (the store folds the events since onto it when loading).
        let write_snapshot = snapshot_version
            .is_none_or(|at| state.stream_version - at >= crate::store::SNAPSHOT_EVERY);
        let snapshot_version = if write_snapshot {
            state.stream_version
        } else {
            snapshot_version.unwrap_or(state.stream_version)
        };

        // The answer to store is rendered before commit (from the decided state, which is what
        // the projection will hold), so the key and the events commit together.
        let state = Arc::new(state);
        let stored_response = idempotency.map(|(_, render)| {
            render(&Outcome {
                state: state.clone(),
                events: Vec::new(),
            })
        });
        let idempotency_record = match (idempotency, &stored_response) {
            (Some((request, _)), Some(response)) => Some(IdempotencyRecord {
                scope: request.scope.clone(),
                key: request.key.clone(),
                request_hash: request.request_hash.clone(),
                status: response.status,
                body: response.body.clone(),
            }),
            _ => None,
        };

        Ok(Prepared {
            batch: AppendBatch {
                stream_id,
                expected_version,
                model_name: state.name.to_string(),
                events,
                actor: caller.actor.clone(),
                request_id: meta.request_id.clone(),
                correlation_id: meta.correlation_id.clone(),
                decision: Some(decision.record),
                state: state.clone(),
                write_snapshot,
                idempotency: idempotency_record,
            },
            state,
            snapshot_version,
            response: stored_response,
        })
    }
}

impl Service {
    /// The model as the store has it, with the version of its stored snapshot; `(None, None)`
    /// when the store has no such model.
    async fn load_for_command(
        &self,
        name: &str,
    ) -> Result<(Option<ModelState>, Option<i64>), ServiceError> {
        let Some(head) = self
            .store
            .model_head(name)
            .await
            .map_err(ServiceError::Store)?
        else {
            return Ok((None, None));
        };
        let state = self
            .store
            .load_model(name)
            .await
            .map_err(ServiceError::Store)?;
        Ok((state, Some(head.snapshot_version)))
    }

    /// What renaming `state` to `new_name` would change, for the rename policy, and the model
    /// that last answered under `new_name` (when another one did). A live model already holding
    /// the name is refused here: names are unique.
    async fn rename_facts(
        &self,
        state: &ModelState,
        new_name: &crate::domain::ModelName,
    ) -> Result<(RenameFacts, Option<String>), ServiceError> {
        if self
            .store
            .load_model(new_name.as_str())
            .await
            .map_err(ServiceError::Store)?
            .is_some()
        {
            return Err(DomainError::AlreadyExists(format!(
                "Registered Model (name={new_name}) already exists"
            ))
            .into());
        }
        let previous_holder = self
            .store
            .last_model_named(new_name.as_str(), &state.model_id.to_string())
            .await
            .map_err(ServiceError::Store)?;
        let holds_stage_or_alias = !state.aliases.is_empty()
            || state
                .versions
                .values()
                .any(|v| !v.deleted && matches!(v.stage, Stage::Staging | Stage::Production));
        Ok((
            RenameFacts {
                new_name: new_name.to_string(),
                holds_stage_or_alias,
                new_name_used_before: previous_holder.is_some(),
            },
            previous_holder,
        ))
    }
}

/// What the approval workflow's policies need about a command: the version it is about (a
/// request or comment named by id belongs to one), that version's stage, and the request.
struct WorkflowFacts {
    version: Option<u64>,
    from_stage: Option<Stage>,
    request: Option<RequestFacts>,
}

impl WorkflowFacts {
    fn of(
        command: &Command,
        state: Option<&ModelState>,
        caller: &crate::domain::Actor,
        now: chrono::DateTime<Utc>,
    ) -> Self {
        let mut facts = WorkflowFacts {
            version: None,
            from_stage: None,
            request: None,
        };
        let Some(state) = state else {
            return facts;
        };
        if let Command::RequestTransition { version, stage, .. } = command {
            facts.version = Some(*version);
            facts.request = Some(RequestFacts {
                id: String::new(),
                requester_subject: caller.subject.clone(),
                requester_issuer: caller.issuer.clone(),
                to_stage: *stage,
                age_seconds: 0,
                approvals_so_far: 0,
                approvers: Vec::new(),
                executes: false,
            });
        } else if let Some(request) = command.request_id().and_then(|id| state.requests.get(id)) {
            facts.version = Some(request.version);
            facts.request = Some(super::approvals::request_facts(request, now, false));
        } else if let Some(comment) = command.comment_id().and_then(|id| state.comments.get(id)) {
            facts.version = Some(comment.version);
        }
        facts.from_stage = facts
            .version
            .and_then(|v| state.live_version(v))
            .map(|v| v.stage);
        facts
    }
}

/// A decided and authorized command, ready to append.
struct Prepared {
    batch: AppendBatch,
    state: Arc<ModelState>,
    /// The version the model's stored snapshot is at once this batch is appended.
    snapshot_version: i64,
    response: Option<StoredResponse>,
}
