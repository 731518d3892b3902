//! Transition requests and comments as the APIs read them, and the sweep that expires requests
//! (approval workflow, issue #17).
//!
//! Writes (request, approve, reject, cancel, comment) are ordinary commands on the one command
//! path (see [`super::commands`]); this module is the read side and the background work. A
//! request lives in its model's state, so reading one is reading the model: the caller needs
//! `ReadModel` first, exactly as for the model itself. Each request is returned with the
//! caller's `available_actions`, computed by asking the authorizer the same question the
//! command path would ask (and the workflow rules no policy may relax), so a client only
//! offers what will be allowed. Finding requests across models (the inbox, the sweep) scans
//! the log's `TransitionRequested` events for the models that ever had one, then reads those
//! models' states: requests are rare next to other events, so this stays cheap without a
//! projection table of its own.
//!
//! The sweep runs as the system principal (like the run pinner) and records `RequestExpired`
//! through the command path, so every expiry is an authorized, hash-chained event.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{AuthzQuestion, Caller, Missing, RequestMeta, Resource, Service, ServiceError};
use crate::domain::approval::{Approval, RequestStatus, TransitionRequest, principal_key};
use crate::domain::events::Actor;
use crate::domain::state::VersionComment;
use crate::domain::{Action, Command, ModelName, ModelState, Stage};
use crate::policy::RequestFacts;
use crate::store::EventQuery;

/// One transition request as the APIs return it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub id: String,
    pub name: String,
    pub version: u64,
    pub to_stage: Stage,
    /// The version's stage when this view was read.
    pub current_stage: Stage,
    pub status: RequestStatus,
    pub requester: Actor,
    pub comment: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub approvals: Vec<Approval>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<Actor>,
    pub closing_comment: Option<String>,
    pub artifact_digest: String,
    pub verification: String,
    pub policy_set_digest: String,
    /// What the caller may do now: any of `approve`, `reject`, `cancel`.
    pub available_actions: Vec<&'static str>,
}

/// One comment as the APIs return it.
#[derive(Debug, Clone, Serialize)]
pub struct CommentView {
    pub id: String,
    pub name: String,
    pub version: u64,
    pub author: Actor,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `edit` and `delete` when the caller wrote it and may comment.
    pub available_actions: Vec<&'static str>,
}

/// The request's facts as the policies see them (`context.request`).
pub(crate) fn request_facts(
    request: &TransitionRequest,
    now: DateTime<Utc>,
    executes: bool,
) -> RequestFacts {
    RequestFacts {
        id: request.id.clone(),
        requester_subject: request.requester.subject.clone(),
        requester_issuer: request.requester.issuer.clone(),
        to_stage: request.to_stage,
        age_seconds: (now - request.opened_at).num_seconds().max(0),
        approvals_so_far: i64::try_from(request.approvals.len()).unwrap_or(i64::MAX),
        approvers: request
            .approvals
            .iter()
            .map(|a| principal_key(&a.by))
            .collect(),
        executes,
    }
}

/// The principal the server records its own facts as (see policies/approvals.cedar).
fn system_caller() -> Caller {
    Caller {
        actor: Actor::system(),
        groups: Vec::new(),
        service_account: true,
        expires_at: None,
    }
}

impl Service {
    /// How long a new transition request stays open.
    pub fn request_lifetime(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.request_lifetime.load(Ordering::Relaxed))
    }

    /// Sets `--request-lifetime` (at least one second).
    pub fn set_request_lifetime(&self, lifetime: std::time::Duration) {
        let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX).max(1);
        self.request_lifetime.store(secs, Ordering::Relaxed);
    }

    /// The model's state for a read of its requests or comments: `ReadModel` first.
    async fn readable_state(
        &self,
        caller: &Caller,
        name: &ModelName,
    ) -> Result<ModelState, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::model(name.as_str()))
            .await?;
        match self.store.load_model(name.as_str()).await? {
            Some(state) if !state.deleted => Ok(state),
            _ => Err(ServiceError::NotFound(Missing::Model {
                name: name.to_string(),
            })),
        }
    }

    /// Whether `caller` may do `action` about `request` now, by the policies (asked the same
    /// question the command path asks) and the workflow rules. Not recorded: this is a preview.
    fn may(
        &self,
        caller: &Caller,
        state: &ModelState,
        request: &TransitionRequest,
        action: Action,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(v) = state.live_version(request.version) else {
            return false;
        };
        let binding = v.binding();
        let rules_allow = match action {
            Action::ApproveTransition => {
                request.approve(&caller.actor, now, &binding, false).is_ok()
            }
            Action::RejectTransition => request.reject(&caller.actor, now, &binding).is_ok(),
            Action::CancelTransition => request.cancel(&caller.actor).is_ok(),
            _ => false,
        };
        if !rules_allow {
            return false;
        }
        let facts = request_facts(request, now, false);
        self.authorizer
            .authorize(&AuthzQuestion {
                caller,
                action,
                model_name: state.name.as_str(),
                model: Some(state),
                version: Some(request.version),
                from_stage: Some(v.stage),
                to_stage: Some(request.to_stage),
                comment: None,
                rename: None,
                request: Some(&facts),
            })
            .allowed
    }

    pub fn request_view(
        &self,
        caller: &Caller,
        state: &ModelState,
        r: &TransitionRequest,
    ) -> RequestView {
        let now = Utc::now();
        let mut available_actions = Vec::new();
        if r.is_open(now) {
            for (action, label) in [
                (Action::ApproveTransition, "approve"),
                (Action::RejectTransition, "reject"),
                (Action::CancelTransition, "cancel"),
            ] {
                if self.may(caller, state, r, action, now) {
                    available_actions.push(label);
                }
            }
        }
        RequestView {
            id: r.id.clone(),
            name: state.name.to_string(),
            version: r.version,
            to_stage: r.to_stage,
            current_stage: state
                .live_version(r.version)
                .map(|v| v.stage)
                .unwrap_or(Stage::None),
            status: r.status,
            requester: r.requester.clone(),
            comment: r.comment.clone(),
            opened_at: r.opened_at,
            expires_at: r.expires_at,
            age_seconds: (r.closed_at.unwrap_or(now) - r.opened_at)
                .num_seconds()
                .max(0),
            approvals: r.approvals.clone(),
            closed_at: r.closed_at,
            closed_by: r.closed_by.clone(),
            closing_comment: r.closing_comment.clone(),
            artifact_digest: r.binding.artifact_digest.clone(),
            verification: r.binding.verification.clone(),
            policy_set_digest: r.binding.policy_set_digest.clone(),
            available_actions,
        }
    }

    pub fn comment_view(
        &self,
        caller: &Caller,
        state: &ModelState,
        c: &VersionComment,
    ) -> CommentView {
        let own = crate::domain::approval::same_principal(&c.author, &caller.actor);
        let may_comment = own
            && self
                .authorizer
                .authorize(&AuthzQuestion {
                    caller,
                    action: Action::Comment,
                    model_name: state.name.as_str(),
                    model: Some(state),
                    version: Some(c.version),
                    from_stage: None,
                    to_stage: None,
                    comment: None,
                    rename: None,
                    request: None,
                })
                .allowed;
        CommentView {
            id: c.id.clone(),
            name: state.name.to_string(),
            version: c.version,
            author: c.author.clone(),
            comment: c.comment.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            available_actions: if may_comment {
                vec!["edit", "delete"]
            } else {
                Vec::new()
            },
        }
    }

    /// The model's requests, oldest first, optionally for one version and one status.
    pub async fn model_requests(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: Option<u64>,
        status: Option<RequestStatus>,
    ) -> Result<Vec<RequestView>, ServiceError> {
        let state = self.readable_state(caller, name).await?;
        if let Some(v) = version
            && state.live_version(v).is_none()
        {
            return Err(ServiceError::NotFound(Missing::Version {
                name: name.to_string(),
                version: v,
            }));
        }
        let mut requests: Vec<&TransitionRequest> = state
            .requests
            .values()
            .filter(|r| version.is_none_or(|v| r.version == v))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .collect();
        requests.sort_by_key(|r| r.opened_at);
        Ok(requests
            .into_iter()
            .map(|r| self.request_view(caller, &state, r))
            .collect())
    }

    /// One request of the model.
    pub async fn model_request(
        &self,
        caller: &Caller,
        name: &ModelName,
        id: &str,
    ) -> Result<RequestView, ServiceError> {
        let state = self.readable_state(caller, name).await?;
        let request = state.requests.get(id).ok_or_else(|| {
            crate::domain::DomainError::from(
                crate::domain::approval::WorkflowError::RequestNotFound(id.to_string()),
            )
        })?;
        Ok(self.request_view(caller, &state, request))
    }

    /// The comments on a version, oldest first.
    pub async fn version_comments(
        &self,
        caller: &Caller,
        name: &ModelName,
        version: u64,
    ) -> Result<Vec<CommentView>, ServiceError> {
        let state = self.readable_state(caller, name).await?;
        if state.live_version(version).is_none() {
            return Err(ServiceError::NotFound(Missing::Version {
                name: name.to_string(),
                version,
            }));
        }
        let mut comments: Vec<&VersionComment> = state
            .comments
            .values()
            .filter(|c| c.version == version)
            .collect();
        comments.sort_by_key(|c| c.created_at);
        Ok(comments
            .into_iter()
            .map(|c| self.comment_view(caller, &state, c))
            .collect())
    }

    /// One comment, wherever it is (Databricks' comment API names only the id); `None` when
    /// no model the caller may read has it.
    pub async fn find_comment(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<CommentView>, ServiceError> {
        for state in self.models_with(Some(caller), "CommentAdded").await? {
            if let Some(c) = state.comments.get(id) {
                return Ok(Some(self.comment_view(caller, &state, c)));
            }
        }
        Ok(None)
    }

    /// The states of the live models whose log has an event of `event_type`; with a `reader`,
    /// only those the reader may read (decided quietly: a filter, not a refused request).
    async fn models_with(
        &self,
        reader: Option<&Caller>,
        event_type: &str,
    ) -> Result<Vec<ModelState>, ServiceError> {
        let mut ids = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .read_events(&EventQuery {
                    event_types: vec![event_type.to_string()],
                    after_position: after,
                    limit: 1_000,
                    ..EventQuery::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.position);
            ids.extend(page.iter().map(|e| e.stream_id));
        }
        let mut states = Vec::new();
        for id in ids {
            let Some(name) = self.store.model_name_by_id(&id.to_string()).await? else {
                continue;
            };
            let readable = reader.is_none_or(|caller| {
                self.authorizer
                    .authorize(&AuthzQuestion {
                        caller,
                        action: Action::ReadModel,
                        model_name: &name,
                        model: None,
                        version: None,
                        from_stage: None,
                        to_stage: None,
                        comment: None,
                        rename: None,
                        request: None,
                    })
                    .allowed
            });
            if !readable {
                continue;
            }
            if let Some(state) = self.store.load_model(&name).await?
                && !state.deleted
                && state.model_id == id
            {
                states.push(state);
            }
        }
        Ok(states)
    }

    /// Requests across every model the caller may read, oldest first: the inbox. `status`
    /// defaults to pending (open) requests.
    pub async fn inbox(
        &self,
        caller: &Caller,
        status: Option<RequestStatus>,
    ) -> Result<Vec<RequestView>, ServiceError> {
        self.check(caller, Action::ReadModel, Resource::Registry)
            .await?;
        let status = status.unwrap_or(RequestStatus::Pending);
        let mut out = Vec::new();
        for state in self
            .models_with(Some(caller), "TransitionRequested")
            .await?
        {
            out.extend(
                state
                    .requests
                    .values()
                    .filter(|r| r.status == status)
                    .map(|r| self.request_view(caller, &state, r)),
            );
        }
        out.sort_by_key(|r| r.opened_at);
        Ok(out)
    }

    /// Records `RequestExpired` (or `RequestVoided`) for every open request that no longer
    /// holds; returns how many were closed.
    pub async fn sweep_stale_requests(&self) -> Result<usize, ServiceError> {
        let system = system_caller();
        let mut closed = 0;
        // The server reads every model; the closing itself is authorized (ExpireRequest).
        for state in self.models_with(None, "TransitionRequested").await? {
            for id in crate::domain::decide::stale_requests(&state, Utc::now()) {
                let command = Command::CloseStaleRequest {
                    name: state.name.clone(),
                    id,
                };
                match self
                    .execute(&system, &RequestMeta::default(), command)
                    .await
                {
                    Ok(_) => closed += 1,
                    // Closed meanwhile by a decision or another process: nothing to do.
                    Err(ServiceError::Domain(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(closed)
    }
}

/// Starts the background sweep that records expired requests every `every`.
pub fn spawn_request_sweep(service: Arc<Service>, every: std::time::Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match service.sweep_stale_requests().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(closed = n, "stale transition requests closed"),
                Err(e) => tracing::warn!(error = %e, "transition request sweep failed"),
            }
        }
    });
}
