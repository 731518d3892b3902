//! The one access check every command and query begins with.
//!
//! `check(caller, action, resource)` asks the policy engine and, when it refuses, writes the
//! refusal to the access-decision log before answering, so "who tried what and was told no"
//! is recorded the same way whichever API the request came through (coalesced, so refusals
//! cannot become a write flood: see [`super::denials`]). Reads are checked before
//! anything about the model is looked up: a caller without `ReadModel` learns nothing, not even
//! whether the model exists. Writes are checked against the model's current state, because the
//! shipped policies (separation of duties, verified artifacts, metric gates) read it.

use std::sync::Arc;

use chrono::Utc;

use crate::domain::{Action, ModelName, ModelState, Stage};
use crate::policy::{RenameFacts, RequestFacts};
use crate::store::AccessDenial;

use super::{AccessDecision, AuthzQuestion, Caller, Service, ServiceError};

/// What a request is about.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// The registry as a whole: search, the audit log, the event feed, tracking pass-through.
    Registry,
    /// A model; `state` is its current state when the policies should see it.
    Model {
        name: &'a str,
        state: Option<&'a ModelState>,
    },
    /// One version of a model.
    Version {
        name: &'a str,
        version: u64,
        state: Option<&'a ModelState>,
    },
}

impl<'a> Resource<'a> {
    pub fn model(name: &'a str) -> Self {
        Resource::Model { name, state: None }
    }

    pub fn version(name: &'a str, version: u64) -> Self {
        Resource::Version {
            name,
            version,
            state: None,
        }
    }

    /// The model, or one of its versions, as it is now.
    pub fn current(name: &'a str, version: Option<u64>, state: Option<&'a ModelState>) -> Self {
        match version {
            Some(version) => Resource::Version {
                name,
                version,
                state,
            },
            None => Resource::Model { name, state },
        }
    }

    fn parts(&self) -> (&'a str, Option<&'a ModelState>, Option<u64>) {
        match *self {
            Resource::Registry => ("", None, None),
            Resource::Model { name, state } => (name, state, None),
            Resource::Version {
                name,
                version,
                state,
            } => (name, state, Some(version)),
        }
    }
}

/// What a write asks for beyond action and resource (the policies' context): the stage change
/// of a `TransitionStage`, the facts of a `RenameModel`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Change<'a> {
    pub from: Option<Stage>,
    pub to: Option<Stage>,
    pub comment: Option<&'a str>,
    pub rename: Option<&'a RenameFacts>,
    /// The transition request an approval-workflow action is about (#17).
    pub request: Option<&'a RequestFacts>,
}

/// Read decisions, remembered so the hottest path (a model server resolving `models:/NAME/...`
/// on every load) does not rebuild Cedar entities and re-run the policies per request.
///
/// Only reads are cached, and only those decided without the model's state (all of them: reads
/// are checked before anything about the model is looked up). Such a decision depends on the
/// caller (issuer, subject, groups, kind), the action, the resource (model name and version)
/// and the policy set, so exactly those are the key: a policy reload moves to a new generation,
/// a token with other groups is another key, and there is no stored entity whose change could
/// make an entry wrong. Entries also expire after [`ReadDecisions::TTL`], which bounds how long
/// a policy reading `context.now` (none of the shipped ones does) can see a cached answer.
pub struct ReadDecisions {
    // Shared, so a hit is a reference count rather than a copy of the decision's JSON record.
    cache: moka::sync::Cache<ReadKey, Arc<AccessDecision>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReadKey {
    generation: u64,
    issuer: String,
    subject: String,
    groups: Vec<String>,
    service_account: bool,
    action: Action,
    model_name: String,
    version: Option<u64>,
}

impl ReadDecisions {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);
    const CAPACITY: u64 = 100_000;
}

impl Default for ReadDecisions {
    fn default() -> Self {
        ReadDecisions {
            cache: moka::sync::Cache::builder()
                .max_capacity(Self::CAPACITY)
                .time_to_live(Self::TTL)
                .build(),
        }
    }
}

impl Service {
    /// Asks the authorizer, through the read-decision cache when the question is a read.
    fn decide(&self, question: &AuthzQuestion<'_>, cacheable: bool) -> Arc<AccessDecision> {
        if !cacheable {
            return Arc::new(self.authorizer.authorize(question));
        }
        // Read before deciding: a reload between the two can only file a new answer under the
        // old generation, where nobody looks for it any more.
        let key = ReadKey {
            generation: self.authorizer.generation(),
            issuer: question.caller.actor.issuer.clone(),
            subject: question.caller.actor.subject.clone(),
            groups: question.caller.groups.clone(),
            service_account: question.caller.service_account,
            action: question.action,
            model_name: question.model_name.to_string(),
            version: question.version,
        };
        if let Some(hit) = self.read_decisions.cache.get(&key) {
            return hit;
        }
        let decision = Arc::new(self.authorizer.authorize(question));
        self.read_decisions.cache.insert(key, decision.clone());
        decision
    }

    /// Decides `action` on `resource` for `caller`; a refusal is recorded and returned as
    /// [`ServiceError::Denied`].
    pub async fn check(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<Arc<AccessDecision>, ServiceError> {
        self.check_shared(caller, action, resource, Change::default(), None, true)
            .await
    }

    /// [`Service::check`] with the stage-change context and the request id for the log. With
    /// `record_refusal` false a refusal is returned but not logged: for a decision made on a
    /// state that may be stale, which the command path then re-decides on the stored state.
    pub(crate) async fn check_change(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
        change: Change<'_>,
        request_id: Option<&str>,
        record_refusal: bool,
    ) -> Result<AccessDecision, ServiceError> {
        // A command's decision is never cached, so this unwraps without copying.
        self.check_shared(caller, action, resource, change, request_id, record_refusal)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Service::check_change`], answering with the shared decision (a read's comes from the
    /// cache).
    async fn check_shared(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
        change: Change<'_>,
        request_id: Option<&str>,
        record_refusal: bool,
    ) -> Result<Arc<AccessDecision>, ServiceError> {
        let (model_name, model, version) = resource.parts();
        let cacheable = action.is_read()
            && model.is_none()
            && change.from.is_none()
            && change.to.is_none()
            && change.comment.is_none()
            && change.rename.is_none()
            && change.request.is_none();
        let question = AuthzQuestion {
            caller,
            action,
            model_name,
            model,
            version,
            from_stage: change.from,
            to_stage: change.to,
            comment: change.comment,
            rename: change.rename,
            request: change.request,
        };
        let decision = self.decide(&question, cacheable);
        if decision.allowed {
            return Ok(decision);
        }
        if !record_refusal {
            return Err(ServiceError::Denied(Arc::unwrap_or_clone(decision)));
        }
        let denial = AccessDenial {
            id: uuid::Uuid::now_v7().to_string(),
            occurred_at: Utc::now(),
            actor: caller.actor.clone(),
            action: action.to_string(),
            model_name: model_name.to_string(),
            version: version.map(|v| v as i64),
            decision: decision.record.clone(),
            request_id: request_id.map(str::to_string),
        };
        self.denials.record(denial).await?;
        Err(ServiceError::Denied(Arc::unwrap_or_clone(decision)))
    }

    /// Checks `action` against the model as it is now and hands back that state: for requests
    /// that are not commands but whose rules read the model (artifact uploads, verification).
    pub async fn check_current(
        &self,
        caller: &Caller,
        action: Action,
        name: &ModelName,
        version: Option<u64>,
    ) -> Result<Option<ModelState>, ServiceError> {
        let model = self.store.load_model(name.as_str()).await?;
        self.check(
            caller,
            action,
            Resource::current(name.as_str(), version, model.as_ref()),
        )
        .await?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::domain::Actor;
    use crate::policy::question::Authorizer;

    /// Allows everything, counting how often it is asked, under a generation the test moves.
    #[derive(Default)]
    struct Counting {
        asked: AtomicU64,
        generation: AtomicU64,
    }

    impl Authorizer for Counting {
        fn authorize(&self, question: &AuthzQuestion<'_>) -> AccessDecision {
            self.asked.fetch_add(1, Ordering::SeqCst);
            crate::policy::AllowAll.authorize(question)
        }
        fn generation(&self) -> u64 {
            self.generation.load(Ordering::SeqCst)
        }
    }

    fn caller(groups: &[&str]) -> Caller {
        Caller {
            actor: Actor {
                subject: "reader".into(),
                issuer: "https://idp.test".into(),
                display_name: None,
            },
            groups: groups.iter().map(|g| g.to_string()).collect(),
            service_account: false,
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn read_decisions_are_reused_until_caller_resource_or_policies_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::connect(&url, 2).await.expect("store");
        let counting = Arc::new(Counting::default());
        let service = Service::new(store, counting.clone());
        let asked = || counting.asked.load(Ordering::SeqCst);
        let reader = caller(&["ml-readers"]);

        for _ in 0..3 {
            service
                .check(&reader, Action::ReadModel, Resource::model("fraud"))
                .await
                .expect("allowed");
        }
        assert_eq!(asked(), 1, "the same read is decided once");
        service
            .check(&reader, Action::ReadModel, Resource::version("fraud", 2))
            .await
            .expect("allowed");
        service
            .check(&reader, Action::ReadAudit, Resource::model("fraud"))
            .await
            .expect("allowed");
        service
            .check(&caller(&[]), Action::ReadModel, Resource::model("fraud"))
            .await
            .expect("allowed");
        assert_eq!(
            asked(),
            4,
            "another resource, action or group set is another question"
        );
        counting.generation.fetch_add(1, Ordering::SeqCst);
        service
            .check(&reader, Action::ReadModel, Resource::model("fraud"))
            .await
            .expect("allowed");
        assert_eq!(asked(), 5, "a policy reload empties the cache");
        // Writes are decided against the model's state every time.
        for _ in 0..2 {
            service
                .check(&reader, Action::UpdateModel, Resource::model("fraud"))
                .await
                .expect("allowed");
        }
        assert_eq!(asked(), 7);
    }
}
