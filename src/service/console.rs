//! What the web console needs from the door beyond the API's reads and commands: its
//! sign-in sessions, and questions of the form "may this caller do that, now?".
//!
//! Sessions are store rows reached only through here, like everything else. The questions
//! ask the authorizer exactly what a command would be asked (the same action, the model's
//! current state, the same stage change) but never record a refusal: the console asks them
//! to decide which buttons to draw, and a button not drawn is not a denied request. The
//! command the button sends is decided again, and recorded, on the command path.

use crate::domain::names::Stage;
use crate::domain::{Action, ModelName};
use crate::store::ConsoleSessionRecord;

use super::access::{Change, Resource};
use super::{AccessDecision, Caller, Service, ServiceError};

impl Service {
    pub async fn create_console_session(
        &self,
        session: &ConsoleSessionRecord,
    ) -> Result<(), ServiceError> {
        Ok(self.store.create_console_session(session).await?)
    }

    pub async fn console_session(
        &self,
        id_sha256: &str,
        now_us: i64,
    ) -> Result<Option<ConsoleSessionRecord>, ServiceError> {
        Ok(self.store.console_session(id_sha256, now_us).await?)
    }

    pub async fn end_console_session(&self, id_sha256: &str) -> Result<(), ServiceError> {
        Ok(self.store.delete_console_session(id_sha256).await?)
    }

    /// How the policies decide `action` by `caller` on the model (and version) as it is now,
    /// for a stage change `from → to` when given. Nothing is recorded: this is a preview.
    pub async fn preview_decision(
        &self,
        caller: &Caller,
        action: Action,
        name: &ModelName,
        version: Option<u64>,
        from: Option<Stage>,
        to: Option<Stage>,
    ) -> Result<AccessDecision, ServiceError> {
        let state = self.store.load_model(name.as_str()).await?;
        // A stage change starts where the version is now, as the command path sees it.
        let from = from.or_else(|| {
            let number = version?;
            to?;
            Some(state.as_ref()?.live_version(number)?.stage)
        });
        // Opening a request is decided on the request it would open, as the command path
        // builds it: the caller's, to `to`, no approvals yet.
        let opening = match (action, to) {
            (Action::RequestTransition, Some(to_stage)) => Some(crate::policy::RequestFacts {
                id: String::new(),
                requester_subject: caller.actor.subject.clone(),
                requester_issuer: caller.actor.issuer.clone(),
                to_stage,
                age_seconds: 0,
                approvals_so_far: 0,
                approvers: Vec::new(),
                executes: false,
            }),
            _ => None,
        };
        let change = Change {
            from,
            to,
            request: opening.as_ref(),
            ..Change::default()
        };
        match self
            .check_change(
                caller,
                action,
                Resource::current(name.as_str(), version, state.as_ref()),
                change,
                None,
                false,
            )
            .await
        {
            Ok(decision) | Err(ServiceError::Denied(decision)) => Ok(decision),
            Err(other) => Err(other),
        }
    }

    /// Whether `caller` may take `action` on the registry as a whole (reading the audit,
    /// say), previewed like [`Service::may_now`]: nothing is recorded.
    pub async fn may_on_registry(
        &self,
        caller: &Caller,
        action: Action,
    ) -> Result<bool, ServiceError> {
        match self
            .check_change(
                caller,
                action,
                Resource::Registry,
                Change::default(),
                None,
                false,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ServiceError::Denied(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Whether `caller` may take `action` now (see [`Service::preview_decision`]).
    pub async fn may_now(
        &self,
        caller: &Caller,
        action: Action,
        name: &ModelName,
        version: Option<u64>,
        to: Option<Stage>,
    ) -> Result<bool, ServiceError> {
        Ok(self
            .preview_decision(caller, action, name, version, None, to)
            .await?
            .allowed)
    }
}

impl Service {
    /// Wakes on every commit to the registry, for a caller allowed to read models at all: the
    /// console's live refresh. It says only *that* something was committed (a position), never
    /// what; the page it refreshes is read, and authorized, as usual.
    pub async fn watch_registry(
        &self,
        caller: &Caller,
    ) -> Result<tokio::sync::broadcast::Receiver<i64>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::Registry)
            .await?;
        Ok(self.store.subscribe())
    }
}
