//! The one command path: load → decide → authorize → append (+ project + outbox).
//!
//! Every write, whether it came through the native API, the MLflow-compatible API or the CLI,
//! is a [`Command`] executed here. Loading, deciding and authorizing happen outside the
//! database transaction; the store's `append` is the single transaction that records the events,
//! rewrites projections and fills the outbox. A lost optimistic-concurrency race is retried from
//! the load (bounded), so concurrent writers never overwrite each other.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::chain::truncate_to_micros;
use crate::domain::events::{Actor, EventEnvelope, NewEvent};
use crate::domain::state::{ModelState, fold};
use crate::domain::{Command, DomainError, Stage, decide};
use crate::store::group::GroupCommitter;
use crate::store::{AccessDenial, AppendBatch, IdempotencyRecord, SharedStore, StoreError};
use crate::tracking::{Upstream, evidence};

/// How many times a command is re-decided after losing a race before the caller gets 409.
const MAX_ATTEMPTS: u32 = 8;

/// Who is calling, as the policy engine sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub actor: Actor,
    pub groups: Vec<String>,
    pub service_account: bool,
}

/// Per-request metadata recorded with the events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `If-Match`: the stream version the caller last saw; a mismatch is 412, not a retry.
    pub if_match: Option<i64>,
}

/// What the authorizer is asked about one command.
pub struct AuthzQuestion<'a> {
    pub caller: &'a Caller,
    pub action: &'a str,
    pub model_name: &'a str,
    pub model: Option<&'a ModelState>,
    pub version: Option<u64>,
    pub from_stage: Option<Stage>,
    pub to_stage: Option<Stage>,
    pub comment: Option<&'a str>,
}

/// An authorization outcome. `record` is stored verbatim in the event (or the denial log).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessDecision {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub record: serde_json::Value,
}

/// The authorization step of the command path.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, question: &AuthzQuestion<'_>) -> AccessDecision;
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{}", .0.reason)]
    Denied(AccessDecision),
    #[error("model '{name}' is at stream version {actual}, not {expected} (If-Match)")]
    PreconditionFailed {
        name: String,
        expected: i64,
        actual: i64,
    },
    #[error("the model changed concurrently {0} times; retry the request")]
    Conflict(u32),
    #[error("Idempotency-Key '{0}' was already used for a different request")]
    IdempotencyMismatch(String),
    #[error(transparent)]
    Store(StoreError),
}

/// An `Idempotency-Key` and what identifies the request it was sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

/// Renders an outcome into the answer stored with an idempotency key.
pub type Render<'a> = dyn Fn(&Outcome) -> StoredResponse + Send + Sync + 'a;
/// An idempotency key with the renderer of its stored answer.
type IdempotencyHook<'a> = (&'a IdempotencyRequest, &'a Render<'a>);

/// A command's result: the model's state after it and the stored events.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: Arc<ModelState>,
    pub events: Vec<EventEnvelope>,
}

/// A stored or fresh HTTP answer for an idempotent request.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

pub struct Service {
    pub store: SharedStore,
    pub authorizer: Arc<dyn Authorizer>,
    /// The MLflow tracking server versions' runs are read from (`--mlflow-upstream`).
    pub tracking: Option<Arc<Upstream>>,
    /// Where appends go: concurrent commands share transactions (see [`GroupCommitter`]).
    pub appender: Arc<GroupCommitter>,
    /// Model states this service's appends produced, by name. An entry is used only while the
    /// model's stream version is still the one it was produced at, so it saves loading and
    /// parsing the model (every version of it) without ever deciding on a stale state.
    pub states: Arc<StateCache>,
}

/// See [`Service::states`].
#[derive(Default)]
pub struct StateCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Arc<ModelState>>>,
}

impl StateCache {
    /// Bound on cached models; past it the cache starts over (entries are only a shortcut).
    /// A model with a few hundred versions takes a few hundred KiB in memory, so this keeps the
    /// cache to a few hundred MiB at worst while covering the models being written to.
    const MAX_ENTRIES: usize = 1_024;

    /// Takes the entry out: the command about to run folds it into its next state (which is
    /// put back after the append), so a large model is not copied when nothing else holds it.
    /// A concurrent command on the same model finds no entry and loads from the store.
    fn take(&self, name: &str, head: &crate::store::ModelHead) -> Option<ModelState> {
        let state = self.entries.lock().ok()?.remove(name)?;
        (state.stream_version == head.stream_version && state.model_id.to_string() == head.model_id)
            .then(|| Arc::try_unwrap(state).unwrap_or_else(|shared| ModelState::clone(&shared)))
    }

    fn put(&self, state: Arc<ModelState>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if state.deleted {
            entries.remove(state.name.as_str());
            return;
        }
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(state.name.to_string(), state);
    }
}

impl Service {
    pub fn new(store: SharedStore, authorizer: Arc<dyn Authorizer>) -> Self {
        Service {
            appender: Arc::new(GroupCommitter::for_store(store.clone())),
            states: Arc::new(StateCache::default()),
            store,
            authorizer,
            tracking: None,
        }
    }

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
            action: "CreateVersion",
            model_name: name.as_str(),
            model: current.as_ref(),
            version: None,
            from_stage: None,
            to_stage: None,
            comment: None,
        });
        if !decision.allowed {
            // The command path records and answers the denial.
            return Ok(command);
        }
        let found = evidence::capture(upstream, source, run_id.as_deref())
            .await
            .map_err(|e| DomainError::InvalidParameter(e.to_string()))?;
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
        self.run(caller, meta, &command, None)
            .await
            .map(|(outcome, _)| outcome)
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
            Ok((_, response)) => Ok(response.unwrap_or(StoredResponse {
                status: 200,
                body: "{}".into(),
            })),
            // Lost a race against a concurrent retry with the same key: its answer is ours.
            Err(ServiceError::Conflict(_)) => match self.replay(&idempotency).await? {
                Some(found) => Ok(found),
                None => Err(ServiceError::Conflict(MAX_ATTEMPTS)),
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
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Spread retries so a burst of writers on one model does not collide in lockstep.
                let jitter = rand::random::<u64>() % (2 << attempt.min(6));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            match self.attempt(caller, meta, command, idempotency).await {
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                // A name taken between our check and our append: decide again, which now sees it.
                Err(ServiceError::Store(StoreError::Unique(_))) if attempt + 1 < MAX_ATTEMPTS => {
                    continue;
                }
                other => return other,
            }
        }
        Err(ServiceError::Conflict(MAX_ATTEMPTS))
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
        self.states.put(prepared.state.clone());
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
        let head = self
            .store
            .model_head(name)
            .await
            .map_err(ServiceError::Store)?;
        let current = match &head {
            None => None,
            Some(head) => match self.states.take(name, head) {
                Some(state) => Some(state),
                None => self
                    .store
                    .load_model(name)
                    .await
                    .map_err(ServiceError::Store)?,
            },
        };
        if let (Some(expected), Some(state)) = (meta.if_match, current.as_ref())
            && state.stream_version != expected
        {
            return Err(ServiceError::PreconditionFailed {
                name: name.to_string(),
                expected,
                actual: state.stream_version,
            });
        }
        if let Command::RenameModel { new_name, .. } = command
            && current.is_some()
            && self
                .store
                .load_model(new_name.as_str())
                .await
                .map_err(ServiceError::Store)?
                .is_some()
        {
            return Err(DomainError::AlreadyExists(format!(
                "Registered model (name={new_name}) already exists"
            ))
            .into());
        }
        let payloads = decide(current.as_ref(), command)?;

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
            _ => (None, None, None),
        };
        // Rollback's target version is only known after decide: authorize against it.
        let version = match command {
            Command::RollbackStage { .. } => payloads.iter().rev().find_map(|p| p.version()),
            _ => command.version(),
        };
        let decision = self.authorizer.authorize(&AuthzQuestion {
            caller,
            action: command.action_name(),
            model_name: name,
            model: current.as_ref(),
            version,
            from_stage,
            to_stage,
            comment,
        });
        if !decision.allowed {
            let denial = AccessDenial {
                occurred_at: Utc::now(),
                actor: caller.actor.clone(),
                action: command.action_name().to_string(),
                model_name: name.to_string(),
                version: version.map(|v| v as i64),
                decision: decision.record.clone(),
                request_id: meta.request_id.clone(),
            };
            self.store
                .record_denial(denial)
                .await
                .map_err(ServiceError::Store)?;
            return Err(ServiceError::Denied(decision));
        }

        let now = truncate_to_micros(Utc::now());
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
        let write_snapshot = head.as_ref().is_none_or(|h| {
            state.stream_version - h.snapshot_version >= crate::store::SNAPSHOT_EVERY
        });

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
            response: stored_response,
        })
    }
}

/// A decided and authorized command, ready to append.
struct Prepared {
    batch: AppendBatch,
    state: Arc<ModelState>,
    response: Option<StoredResponse>,
}

/// The authorizer used until a policy engine is configured: allows everything and records that
/// no policy was consulted, so such events are recognizable in the audit trail.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, question: &AuthzQuestion<'_>) -> AccessDecision {
        AccessDecision {
            allowed: true,
            policy_ids: Vec::new(),
            reason: "no policy engine configured".into(),
            record: serde_json::json!({
                "allowed": true,
                "action": question.action,
                "engine": "allow-all",
            }),
        }
    }
}
