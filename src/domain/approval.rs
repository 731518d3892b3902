//! The approval workflow's rules for one transition request (issue #17), with no I/O.
//!
//! A transition request asks that a model version move to a stage; other principals approve or
//! reject it, and the requester may cancel it. A request is *bound* to what was reviewed: the
//! version's artifact digest and the digest of the policy set in force when it was opened. If
//! either changes before the request is decided, the request is void, because an approval of
//! different bytes or under different rules is not the approval anyone gave. A request also
//! expires (seven days by default) so that a stale "yes" cannot be spent months later.
//!
//! This module only decides; it holds no clock and no store. The caller passes `now` and the
//! current bindings, and gets back either the next status or a [`WorkflowError`] that names the
//! refusal. Who *may* approve is Cedar's job (policies/approvals.cedar, still to come); the two
//! rules enforced here as well are the ones no policy may relax: nobody approves their own
//! request, and one principal counts once.

use chrono::{DateTime, Duration, Utc};

use super::names::Stage;

/// How long a request stays open when the deployment configures nothing else.
pub const DEFAULT_REQUEST_LIFETIME: Duration = Duration::days(7);

/// Where a request is in its life. Every status but `Pending` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    /// Enough distinct approvals arrived; the transition was executed with the last one.
    Approved,
    Rejected,
    Cancelled,
    Expired,
    /// The artifact or the policy set changed under the request.
    Voided,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Expired => "expired",
            RequestStatus::Voided => "voided",
        }
    }

    pub fn is_final(self) -> bool {
        self != RequestStatus::Pending
    }
}

/// What a request was opened against; compared on every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub artifact_digest: String,
    pub policy_set_digest: String,
}

/// One open or closed transition request, as the fold of its events would build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRequest {
    pub requester: String,
    pub to_stage: Stage,
    pub binding: Binding,
    pub opened_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// How many distinct approvers the transition needs (two for risk=high Production).
    pub approvals_required: usize,
    /// Distinct approvers so far, in arrival order.
    pub approvers: Vec<String>,
    pub status: RequestStatus,
}

/// Why a workflow step was refused. Stable codes for the API layers come from [`Self::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("the request is already {}", .0.as_str())]
    AlreadyFinal(RequestStatus),
    #[error("nobody approves or rejects their own request")]
    OwnRequest,
    #[error("only the requester may cancel a request")]
    NotRequester,
    #[error("{0} has already approved this request")]
    AlreadyApproved(String),
    #[error("the request expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the {0} changed since the request was opened; the request is void")]
    BindingChanged(&'static str),
    #[error("a request lifetime must be positive")]
    NonPositiveLifetime,
}

impl WorkflowError {
    pub fn code(&self) -> &'static str {
        match self {
            WorkflowError::AlreadyFinal(_) => "REQUEST_ALREADY_DECIDED",
            WorkflowError::OwnRequest => "OWN_REQUEST",
            WorkflowError::NotRequester => "NOT_REQUESTER",
            WorkflowError::AlreadyApproved(_) => "ALREADY_APPROVED",
            WorkflowError::Expired(_) => "REQUEST_EXPIRED",
            WorkflowError::BindingChanged(_) => "REQUEST_VOIDED",
            WorkflowError::NonPositiveLifetime => "INVALID_LIFETIME",
        }
    }
}

/// The number of distinct approvers a transition needs. Production for a high-risk model needs
/// two, so that one compromised or careless account cannot ship it alone.
pub fn approvals_required(to_stage: Stage, risk: Option<&str>) -> usize {
    if to_stage == Stage::Production && risk == Some("high") {
        2
    } else {
        1
    }
}

/// What approving did: the request is still waiting for more approvers, or the transition is due
/// now, in the same transaction as the approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    AwaitingMore { still_needed: usize },
    ExecuteTransition,
}

impl TransitionRequest {
    pub fn open(
        requester: impl Into<String>,
        to_stage: Stage,
        binding: Binding,
        approvals_required: usize,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<Self, WorkflowError> {
        if lifetime <= Duration::zero() {
            return Err(WorkflowError::NonPositiveLifetime);
        }
        Ok(TransitionRequest {
            requester: requester.into(),
            to_stage,
            binding,
            opened_at: now,
            expires_at: now + lifetime,
            approvals_required: approvals_required.max(1),
            approvers: Vec::new(),
            status: RequestStatus::Pending,
        })
    }

    /// The checks every decision shares, in the order a reviewer would want them reported:
    /// a closed request first, then time, then the bindings.
    fn check_open(&self, now: DateTime<Utc>, current: &Binding) -> Result<(), WorkflowError> {
        if self.status.is_final() {
            return Err(WorkflowError::AlreadyFinal(self.status));
        }
        if now >= self.expires_at {
            return Err(WorkflowError::Expired(self.expires_at));
        }
        if current.artifact_digest != self.binding.artifact_digest {
            return Err(WorkflowError::BindingChanged("artifact digest"));
        }
        if current.policy_set_digest != self.binding.policy_set_digest {
            return Err(WorkflowError::BindingChanged("policy set"));
        }
        Ok(())
    }

    pub fn approve(
        &mut self,
        approver: &str,
        now: DateTime<Utc>,
        current: &Binding,
    ) -> Result<ApprovalOutcome, WorkflowError> {
        self.check_open(now, current)?;
        if approver == self.requester {
            return Err(WorkflowError::OwnRequest);
        }
        if self.approvers.iter().any(|a| a == approver) {
            return Err(WorkflowError::AlreadyApproved(approver.to_owned()));
        }
        self.approvers.push(approver.to_owned());
        let still_needed = self.approvals_required.saturating_sub(self.approvers.len());
        if still_needed == 0 {
            self.status = RequestStatus::Approved;
            Ok(ApprovalOutcome::ExecuteTransition)
        } else {
            Ok(ApprovalOutcome::AwaitingMore { still_needed })
        }
    }

    pub fn reject(
        &mut self,
        reviewer: &str,
        now: DateTime<Utc>,
        current: &Binding,
    ) -> Result<(), WorkflowError> {
        self.check_open(now, current)?;
        if reviewer == self.requester {
            return Err(WorkflowError::OwnRequest);
        }
        self.status = RequestStatus::Rejected;
        Ok(())
    }

    /// Cancelling is allowed after expiry or a binding change too: the requester withdrawing
    /// a dead request is harmless, so only a final status and the requester's identity matter.
    pub fn cancel(&mut self, principal: &str) -> Result<(), WorkflowError> {
        if self.status.is_final() {
            return Err(WorkflowError::AlreadyFinal(self.status));
        }
        if principal != self.requester {
            return Err(WorkflowError::NotRequester);
        }
        self.status = RequestStatus::Cancelled;
        Ok(())
    }

    /// The system principal's sweep: marks the request expired or void if it no longer holds.
    /// Returns the new status when it changed, so the caller knows to record an event.
    pub fn sweep(&mut self, now: DateTime<Utc>, current: &Binding) -> Option<RequestStatus> {
        let next = match self.check_open(now, current) {
            Ok(()) | Err(WorkflowError::AlreadyFinal(_)) => return None,
            Err(WorkflowError::Expired(_)) => RequestStatus::Expired,
            Err(_) => RequestStatus::Voided,
        };
        self.status = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(artifact: &str, policies: &str) -> Binding {
        Binding {
            artifact_digest: artifact.into(),
            policy_set_digest: policies.into(),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
    }

    fn request(required: usize) -> TransitionRequest {
        TransitionRequest::open(
            "alice",
            Stage::Production,
            binding("sha256:a", "sha256:p"),
            required,
            t0(),
            DEFAULT_REQUEST_LIFETIME,
        )
        .expect("positive lifetime")
    }

    #[test]
    fn one_approval_from_someone_else_executes_the_transition() {
        let mut r = request(1);
        let out = r.approve("bob", t0(), &binding("sha256:a", "sha256:p"));
        assert_eq!(out, Ok(ApprovalOutcome::ExecuteTransition));
        assert_eq!(r.status, RequestStatus::Approved);
        let again = r.approve("carol", t0(), &binding("sha256:a", "sha256:p"));
        assert_eq!(
            again,
            Err(WorkflowError::AlreadyFinal(RequestStatus::Approved))
        );
    }

    #[test]
    fn nobody_approves_or_rejects_their_own_request() {
        let mut r = request(1);
        let b = binding("sha256:a", "sha256:p");
        assert_eq!(r.approve("alice", t0(), &b), Err(WorkflowError::OwnRequest));
        assert_eq!(r.reject("alice", t0(), &b), Err(WorkflowError::OwnRequest));
        assert_eq!(r.status, RequestStatus::Pending);
        assert!(r.approvers.is_empty());
    }

    #[test]
    fn high_risk_production_needs_two_distinct_approvers() {
        assert_eq!(approvals_required(Stage::Production, Some("high")), 2);
        assert_eq!(approvals_required(Stage::Production, Some("low")), 1);
        assert_eq!(approvals_required(Stage::Staging, Some("high")), 1);
        let mut r = request(approvals_required(Stage::Production, Some("high")));
        let b = binding("sha256:a", "sha256:p");
        assert_eq!(
            r.approve("bob", t0(), &b),
            Ok(ApprovalOutcome::AwaitingMore { still_needed: 1 })
        );
        assert_eq!(
            r.approve("bob", t0(), &b),
            Err(WorkflowError::AlreadyApproved("bob".into()))
        );
        assert_eq!(
            r.approve("carol", t0(), &b),
            Ok(ApprovalOutcome::ExecuteTransition)
        );
        assert_eq!(r.approvers, vec!["bob".to_string(), "carol".to_string()]);
    }

    #[test]
    fn a_changed_artifact_or_policy_set_voids_the_request() {
        let mut r = request(1);
        assert_eq!(
            r.approve("bob", t0(), &binding("sha256:b", "sha256:p")),
            Err(WorkflowError::BindingChanged("artifact digest"))
        );
        assert_eq!(
            r.approve("bob", t0(), &binding("sha256:a", "sha256:q")),
            Err(WorkflowError::BindingChanged("policy set"))
        );
        assert_eq!(
            r.sweep(t0(), &binding("sha256:a", "sha256:q")),
            Some(RequestStatus::Voided)
        );
        assert_eq!(r.sweep(t0(), &binding("sha256:a", "sha256:q")), None);
    }

    #[test]
    fn requests_expire_after_their_lifetime() {
        let mut r = request(1);
        let b = binding("sha256:a", "sha256:p");
        let late = t0() + DEFAULT_REQUEST_LIFETIME;
        assert_eq!(r.sweep(late - Duration::seconds(1), &b), None);
        assert_eq!(
            r.approve("bob", late, &b),
            Err(WorkflowError::Expired(late))
        );
        assert_eq!(r.sweep(late, &b), Some(RequestStatus::Expired));
        assert!(
            TransitionRequest::open("a", Stage::Staging, b, 1, t0(), Duration::zero()).is_err()
        );
    }

    #[test]
    fn only_the_requester_cancels_and_only_while_pending() {
        let mut r = request(1);
        assert_eq!(r.cancel("bob"), Err(WorkflowError::NotRequester));
        assert_eq!(r.cancel("alice"), Ok(()));
        assert_eq!(
            r.cancel("alice"),
            Err(WorkflowError::AlreadyFinal(RequestStatus::Cancelled))
        );
        assert_eq!(
            WorkflowError::AlreadyFinal(RequestStatus::Cancelled).code(),
            "REQUEST_ALREADY_DECIDED"
        );
    }
}
