//! The one door: every write and every read of the registry goes through [`Service`].
//!
//! Whatever API a request came through (native `/api/v1`, the MLflow wire API, the artifact
//! routes, the event stream, the CLI), it reaches the registry only as a call on this type:
//!
//! - [`commands`]: the write path, load → decide → authorize → append (+ project + outbox) in
//!   one transaction. Commands for the same model are queued in this process so they never race
//!   each other; a race with another process is retried from the load.
//! - [`queries`]: every read (get, search, resolve, latest versions, history, events, audit),
//!   each authorized before anything about the model is revealed, with the read cache behind
//!   them so every API gets the same fast answers.
//! - [`approvals`]: transition requests and comments as the APIs read them (with the caller's
//!   `available_actions`), the inbox, and the sweep that records expired requests.
//! - [`access`]: the single `check(caller, action, resource)` both paths start with; it decides
//!   with the policy engine and records what it refused.
//!
//! HTTP handlers hold a `Service`, never a store: nothing above this module can skip the
//! access check or write around the event log.

pub mod access;
// Approval workflow (#17).
pub mod approvals;
pub mod commands;
mod per_model;
// Web console sessions and action previews (#19).
pub mod console;
pub mod denials;
pub mod queries;
pub mod run_pins;
pub mod webhooks;

use std::sync::Arc;

use crate::domain::DomainError;
use crate::domain::events::EventEnvelope;
use crate::domain::state::ModelState;
use crate::store::SharedStore;
use crate::store::group::GroupCommitter;
use crate::tracking::Upstream;

pub use crate::policy::question::{AccessDecision, AllowAll, Authorizer, AuthzQuestion, Caller};
pub use crate::store::probe::Probe as DatabaseProbe;
/// The read model's types, as handlers see them: queries take and return these, so the HTTP
/// layer names the service, never the store.
pub use crate::store::views::Principal;
pub use crate::store::{
    DeliveryRecord, EventQuery, ModelFilter, ModelQuery, ModelView, NumberMatch, Page, Paging,
    SortKey, StoreError, TextMatch, VersionFilter, VersionQuery, VersionView, WebhookStatus,
};
pub use access::Resource;
pub use per_model::StateCache;
pub use queries::{AuditReader, ModelSummary, ModelWithLatest};

/// Per-request metadata recorded with the events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    /// `If-Match`: the stream version the caller last saw; a mismatch is 412, not a retry.
    pub if_match: Option<i64>,
}

/// What a read looked for and did not find. Each API words it its own way (MLflow clients
/// match on MLflow's sentences), so the service says what is missing, not how to say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Model {
        name: String,
    },
    Version {
        name: String,
        version: u64,
    },
    /// MLflow's wording is the only one: "Webhook with ID x not found".
    Webhook {
        id: String,
    },
    Delivery {
        webhook_id: String,
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{}", .0.reason)]
    Denied(AccessDecision),
    #[error("{}", match .0 {
        Missing::Model { name } => format!("Registered model '{name}' does not exist"),
        Missing::Version { name, version } => format!("Model Version (name={name}, version={version}) not found"),
        Missing::Webhook { id } => format!("Webhook with ID {id} not found"),
        Missing::Delivery { webhook_id, id } => format!("Webhook with ID {webhook_id} has no delivery with ID {id}"),
    })]
    NotFound(Missing),
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

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}

/// An `Idempotency-Key` and what identifies the request it was sent with.
#[derive(Debug, Clone)]
pub struct IdempotencyRequest {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

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
    /// Private: the only way to the registry's data is through this type's methods.
    store: SharedStore,
    pub authorizer: Arc<dyn Authorizer>,
    /// The MLflow tracking server versions' runs are read from (`--mlflow-upstream`).
    pub tracking: Option<Arc<Upstream>>,
    /// Where appends go: concurrent commands share transactions (see [`GroupCommitter`]).
    pub appender: Arc<GroupCommitter>,
    /// Model states this service's appends produced, by name. An entry is used only while the
    /// model's stream version is still the one it was produced at, so it saves loading and
    /// parsing the model (every version of it) without ever deciding on a stale state.
    pub states: Arc<StateCache>,
    /// One queue per model name: commands for the same model run one after another.
    queues: Arc<per_model::ModelQueues>,
    /// Answers to the hottest reads, valid until the next commit (see [`queries::ReadCache`]).
    reads: Arc<queries::ReadCache>,
    /// Where refusals are recorded, coalesced (see [`denials`]).
    denials: Arc<denials::DenialLog>,
    /// Read decisions by caller, action, resource and policy generation.
    read_decisions: Arc<access::ReadDecisions>,
    /// Versions whose run pin is pending, for the background pinner (issue #16).
    run_pins: Arc<run_pins::PinQueue>,
    /// The configured artifact stores, for runs whose files live in one of them directly
    /// (the tracking server does not proxy artifacts): pinned by reading the store itself.
    run_stores: Option<crate::artifacts::stores::StoreRegistry>,
    /// How webhook secrets are sealed and webhooks are checked and sent (issue #18).
    webhooks: Arc<crate::webhooks::WebhookSettings>,
    /// How long a transition request stays open, in seconds (`--request-lifetime`, issue
    /// #17); an atomic so the configured value can be set on the shared service.
    request_lifetime: Arc<std::sync::atomic::AtomicI64>,
}

impl Service {
    pub fn new(store: SharedStore, authorizer: Arc<dyn Authorizer>) -> Self {
        Self::with_webhook_settings(
            store,
            authorizer,
            Arc::new(crate::webhooks::WebhookSettings::ephemeral()),
        )
    }

    /// [`Service::new`] with the configured webhook settings (`serve` builds it this way; the
    /// plain constructor seals webhook secrets under a key that dies with the process).
    pub fn with_webhook_settings(
        store: SharedStore,
        authorizer: Arc<dyn Authorizer>,
        webhooks: Arc<crate::webhooks::WebhookSettings>,
    ) -> Self {
        Service {
            webhooks,
            appender: Arc::new(GroupCommitter::for_store(store.clone())),
            states: Arc::new(StateCache::default()),
            queues: Arc::new(per_model::ModelQueues::default()),
            reads: Arc::new(queries::ReadCache::new(&store)),
            denials: denials::DenialLog::start(store.clone()),
            read_decisions: Arc::new(access::ReadDecisions::default()),
            run_pins: Arc::default(),
            run_stores: None,
            request_lifetime: Arc::new(std::sync::atomic::AtomicI64::new(
                crate::domain::approval::DEFAULT_REQUEST_LIFETIME.num_seconds(),
            )),
            store,
            authorizer,
            tracking: None,
        }
    }

    /// The same service with run evidence read from an MLflow tracking server, and the run
    /// files that lie in a configured store read from `stores`.
    pub fn with_tracking(
        &self,
        upstream: Arc<Upstream>,
        stores: Option<crate::artifacts::stores::StoreRegistry>,
    ) -> Self {
        Service {
            store: self.store.clone(),
            authorizer: self.authorizer.clone(),
            tracking: Some(upstream),
            appender: self.appender.clone(),
            states: self.states.clone(),
            queues: self.queues.clone(),
            reads: self.reads.clone(),
            denials: self.denials.clone(),
            read_decisions: self.read_decisions.clone(),
            run_pins: self.run_pins.clone(),
            run_stores: stores,
            webhooks: self.webhooks.clone(),
            request_lifetime: self.request_lifetime.clone(),
        }
    }
}
