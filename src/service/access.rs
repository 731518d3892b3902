//! The one access check every command and query begins with.
//!
//! `check(caller, action, resource)` asks the policy engine and, when it refuses, writes the
//! refusal to the access-decision log before answering, so "who tried what and was told no"
//! is recorded the same way whichever API the request came through. Reads are checked before
//! anything about the model is looked up: a caller without `ReadModel` learns nothing, not even
//! whether the model exists. Writes are checked against the model's current state, because the
//! shipped policies (separation of duties, verified artifacts, metric gates) read it.

use chrono::Utc;

use crate::domain::{Action, ModelName, ModelState, Stage};
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

/// The stage change a `TransitionStage` request asks for (the policies' context).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageChange<'a> {
    pub from: Option<Stage>,
    pub to: Option<Stage>,
    pub comment: Option<&'a str>,
}

impl Service {
    /// Decides `action` on `resource` for `caller`; a refusal is recorded and returned as
    /// [`ServiceError::Denied`].
    pub async fn check(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<AccessDecision, ServiceError> {
        self.check_change(caller, action, resource, StageChange::default(), None)
            .await
    }

    /// [`Service::check`] with the stage-change context and the request id for the log.
    pub(crate) async fn check_change(
        &self,
        caller: &Caller,
        action: Action,
        resource: Resource<'_>,
        change: StageChange<'_>,
        request_id: Option<&str>,
    ) -> Result<AccessDecision, ServiceError> {
        let (model_name, model, version) = resource.parts();
        let decision = self.authorizer.authorize(&AuthzQuestion {
            caller,
            action,
            model_name,
            model,
            version,
            from_stage: change.from,
            to_stage: change.to,
            comment: change.comment,
        });
        if decision.allowed {
            return Ok(decision);
        }
        let denial = AccessDenial {
            occurred_at: Utc::now(),
            actor: caller.actor.clone(),
            action: action.to_string(),
            model_name: model_name.to_string(),
            version: version.map(|v| v as i64),
            decision: decision.record.clone(),
            request_id: request_id.map(str::to_string),
        };
        self.store.record_denial(denial).await?;
        Err(ServiceError::Denied(decision))
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
