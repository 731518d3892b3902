//! The approval workflow's side of `decide`: finding the request or comment a command names,
//! and closing requests that no longer hold.
//!
//! A transition request is bound to the bytes of its version (artifact digest, verification,
//! signature) at the moment it was opened. Anything that changes those bytes, or deletes the
//! version, must close the request in the same append as its cause, so no approval can ever be
//! applied to something other than what the approvers saw. These helpers compute those
//! closing events; `decide` calls them and stays a single match over commands.

use chrono::{DateTime, Utc};

use super::DecideContext;
use super::{DomainError, MAX_COMMENT_CHARS, check_text};
use crate::domain::approval::{self, TransitionRequest, WorkflowError};
use crate::domain::command::Command;
use crate::domain::events::{Actor, EventPayload};
use crate::domain::state::ModelState;

pub(super) fn check_comment(comment: &str) -> Result<(), DomainError> {
    if comment.trim().is_empty() {
        return Err(DomainError::InvalidParameter(
            "comment must not be empty".into(),
        ));
    }
    check_text("comment", comment, MAX_COMMENT_CHARS)
}

pub(super) fn require_request<'s>(
    state: &'s ModelState,
    id: &str,
) -> Result<&'s TransitionRequest, DomainError> {
    state
        .requests
        .get(id)
        .ok_or_else(|| WorkflowError::RequestNotFound(id.to_string()).into())
}

pub(super) fn require_own_comment<'s>(
    state: &'s ModelState,
    id: &str,
    actor: &Actor,
) -> Result<&'s crate::domain::state::VersionComment, DomainError> {
    let comment = state
        .comments
        .get(id)
        .ok_or_else(|| WorkflowError::CommentNotFound(id.to_string()))?;
    if !approval::same_principal(&comment.author, actor) {
        return Err(WorkflowError::NotAuthor.into());
    }
    Ok(comment)
}

/// The binding of the request's version as it is now; a deleted version voids the request.
pub(super) fn current_binding(
    state: &ModelState,
    request: &TransitionRequest,
) -> Result<approval::Binding, DomainError> {
    match state.live_version(request.version) {
        Some(v) => Ok(v.binding()),
        None => Err(WorkflowError::BindingChanged("version").into()),
    }
}

/// The event that closes `request` because it expired or no longer holds, if it should close.
pub(super) fn stale(
    state: &ModelState,
    request: &TransitionRequest,
    now: DateTime<Utc>,
) -> Option<EventPayload> {
    if request.status.is_final() {
        return None;
    }
    let Some(v) = state.live_version(request.version) else {
        return Some(EventPayload::RequestVoided {
            request_id: request.id.clone(),
            version: request.version,
            reason: "the version was deleted".into(),
        });
    };
    match request.sweep(now, &v.binding())? {
        approval::RequestStatus::Expired => Some(EventPayload::RequestExpired {
            request_id: request.id.clone(),
            version: request.version,
        }),
        _ => Some(EventPayload::RequestVoided {
            request_id: request.id.clone(),
            version: request.version,
            reason: match request.binding.holds_for(&v.binding()) {
                Err(e) => e.to_string(),
                Ok(()) => "the request no longer holds".into(),
            },
        }),
    }
}

/// Appends a `RequestVoided` for every open request whose version's artifact or verification
/// the command's events changed (or whose version they deleted), so the void is recorded in
/// the same append as its cause. Only workflow-neutral commands can void; a model without open
/// requests costs nothing.
pub(super) fn with_voided_requests(
    state: &ModelState,
    command: &Command,
    mut events: Vec<EventPayload>,
    ctx: &DecideContext,
) -> Vec<EventPayload> {
    let voids_possible = matches!(
        command,
        Command::RecordVerification { .. }
            | Command::PinRunArtifacts { .. }
            | Command::DeleteVersion { .. }
    );
    if !voids_possible || state.pending_requests().next().is_none() {
        return events;
    }
    let mut after = state.clone();
    for e in &events {
        after.apply(e, ctx.now, &ctx.actor);
    }
    let voided: Vec<EventPayload> = state
        .pending_requests()
        .filter_map(|r| {
            let reason = match after.live_version(r.version) {
                None => "the version was deleted".to_string(),
                Some(v) => r.binding.holds_for(&v.binding()).err()?.to_string(),
            };
            Some(EventPayload::RequestVoided {
                request_id: r.id.clone(),
                version: r.version,
                reason,
            })
        })
        .collect();
    events.extend(voided);
    events
}

/// The requests `decide` would close now (expired, or bound to bytes that changed): what the
/// background sweep asks for with [`Command::CloseStaleRequest`].
pub fn stale_requests(state: &ModelState, now: DateTime<Utc>) -> Vec<String> {
    state
        .pending_requests()
        .filter(|r| stale(state, r, now).is_some())
        .map(|r| r.id.clone())
        .collect()
}
