//! The approval workflow's rules for one transition request (issue #17), with no I/O.
//!
//! A transition request asks that a model version move to a stage; other principals approve or
//! reject it, and the requester may cancel it. A request is *bound* to what was reviewed: the
//! version's artifact digest and its verification outcome. If either changes before the request
//! is decided, the request is void, because an approval of different bytes is not the approval
//! anyone gave. The request also records the digest of the policy set in force when it was
//! opened, but a policy change does not void it: approval is decided under the policies in
//! force at approval time, and the approval's own decision record names that set. A request
//! also expires (seven days by default) so that a stale "yes" cannot be spent months later.
//!
//! This module only decides; it holds no clock and no store. The caller passes `now` and the
//! current binding, and gets back either the next status or a [`WorkflowError`] that names the
//! refusal. Who *may* approve, and how many distinct approvers a transition needs, is Cedar's
//! job (policies/approvals.cedar): the caller asks the policies whether this approval may
//! complete the request and passes the answer in. The two rules enforced here as well are the
//! ones no policy may relax: nobody approves their own request, and one principal counts once.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::events::Actor;
use super::names::Stage;

/// How long a request stays open when the deployment configures nothing else.
pub const DEFAULT_REQUEST_LIFETIME: Duration = Duration::days(7);

/// Where a request is in its life. Every status but `Pending` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    /// Enough distinct approvals arrived; the transition was executed with the last one.
    Approved,
    Rejected,
    Cancelled,
    Expired,
    /// The artifact or its verification changed under the request (or the version went).
    Voided,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 6] = [
        RequestStatus::Pending,
        RequestStatus::Approved,
        RequestStatus::Rejected,
        RequestStatus::Cancelled,
        RequestStatus::Expired,
        RequestStatus::Voided,
    ];

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

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(raw.trim()))
    }

    pub fn is_final(self) -> bool {
        self != RequestStatus::Pending
    }
}

/// What a request was opened against; the artifact part is compared on every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The version's manifest digest ("" when it has no artifact).
    pub artifact_digest: String,
    /// The version's verification outcome: `verified:<digest>`, `failed` or `not_verified`.
    pub verification: String,
    /// The policy set in force when the request was opened; recorded, never compared.
    pub policy_set_digest: String,
}

impl Binding {
    /// Whether `current` still describes the reviewed bytes (the policy set may differ).
    pub fn holds_for(&self, current: &Binding) -> Result<(), WorkflowError> {
        if current.artifact_digest != self.artifact_digest {
            return Err(WorkflowError::BindingChanged("artifact digest"));
        }
        if current.verification != self.verification {
            return Err(WorkflowError::BindingChanged("artifact verification"));
        }
        Ok(())
    }
}

/// One approval given, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub by: Actor,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One open or closed transition request, as the fold of its events builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRequest {
    pub id: String,
    pub version: u64,
    pub to_stage: Stage,
    pub requester: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub binding: Binding,
    pub opened_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Distinct approvers so far, in arrival order.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    pub status: RequestStatus,
    /// Who closed the request (approver, rejecter, requester, or the system), when, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closing_comment: Option<String>,
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
    #[error("version {version} already has an open request ({id}) for {stage}")]
    OpenRequestExists {
        version: u64,
        stage: Stage,
        id: String,
    },
    #[error("no transition request '{0}' on this model")]
    RequestNotFound(String),
    #[error("no comment '{0}' on this model")]
    CommentNotFound(String),
    #[error("only the author of a comment may change or delete it")]
    NotAuthor,
    #[error("version {version} is already in {stage}")]
    AlreadyInStage { version: u64, stage: Stage },
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
            WorkflowError::OpenRequestExists { .. } => "REQUEST_ALREADY_OPEN",
            WorkflowError::RequestNotFound(_) => "REQUEST_NOT_FOUND",
            WorkflowError::CommentNotFound(_) => "COMMENT_NOT_FOUND",
            WorkflowError::NotAuthor => "NOT_COMMENT_AUTHOR",
            WorkflowError::AlreadyInStage { .. } => "ALREADY_IN_STAGE",
        }
    }

    /// The HTTP status class of the refusal: who may not (403), what is not there (404), what
    /// the current state no longer allows (409), a bad value (400).
    pub fn status(&self) -> u16 {
        match self {
            WorkflowError::OwnRequest | WorkflowError::NotRequester | WorkflowError::NotAuthor => {
                403
            }
            WorkflowError::RequestNotFound(_) | WorkflowError::CommentNotFound(_) => 404,
            WorkflowError::NonPositiveLifetime => 400,
            WorkflowError::AlreadyFinal(_)
            | WorkflowError::AlreadyApproved(_)
            | WorkflowError::Expired(_)
            | WorkflowError::BindingChanged(_)
            | WorkflowError::OpenRequestExists { .. }
            | WorkflowError::AlreadyInStage { .. } => 409,
        }
    }
}

/// Issuer and subject together identify a principal (as in the Production policies).
pub fn same_principal(a: &Actor, b: &Actor) -> bool {
    a.subject == b.subject && a.issuer == b.issuer
}

/// The principal as one string, `subject@issuer`, as Cedar uids and approver lists spell it.
pub fn principal_key(actor: &Actor) -> String {
    format!("{}@{}", actor.subject, actor.issuer)
}

/// What approving did: the request is still waiting for more approvers, or the transition is due
/// now, in the same append as the approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    AwaitingMore,
    ExecuteTransition,
}

/// What opening a request needs besides the requester.
#[derive(Debug, Clone)]
pub struct Opening {
    pub id: String,
    pub version: u64,
    pub to_stage: Stage,
    pub comment: Option<String>,
    pub binding: Binding,
}

impl TransitionRequest {
    pub fn open(
        opening: Opening,
        requester: &Actor,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<Self, WorkflowError> {
        if lifetime <= Duration::zero() {
            return Err(WorkflowError::NonPositiveLifetime);
        }
        Ok(TransitionRequest {
            id: opening.id,
            version: opening.version,
            to_stage: opening.to_stage,
            requester: requester.clone(),
            comment: opening.comment,
            binding: opening.binding,
            opened_at: now,
            expires_at: now + lifetime,
            approvals: Vec::new(),
            status: RequestStatus::Pending,
            closed_at: None,
            closed_by: None,
            closing_comment: None,
        })
    }

    /// The checks every decision shares, in the order a reviewer would want them reported:
    /// a closed request first, then time, then the binding.
    fn check_open(&self, now: DateTime<Utc>, current: &Binding) -> Result<(), WorkflowError> {
        if self.status.is_final() {
            return Err(WorkflowError::AlreadyFinal(self.status));
        }
        if now >= self.expires_at {
            return Err(WorkflowError::Expired(self.expires_at));
        }
        self.binding.holds_for(current)
    }

    /// Whether the request is pending and would still be accepted at `now` (not expired).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.status == RequestStatus::Pending && now < self.expires_at
    }

    /// Checks that `approver` may add an approval. `completes` is the policies' answer to
    /// "may this approval be the last one?" (the N-of-M rule lives in policy).
    pub fn approve(
        &self,
        approver: &Actor,
        now: DateTime<Utc>,
        current: &Binding,
        completes: bool,
    ) -> Result<ApprovalOutcome, WorkflowError> {
        self.check_open(now, current)?;
        if same_principal(approver, &self.requester) {
            return Err(WorkflowError::OwnRequest);
        }
        if self
            .approvals
            .iter()
            .any(|a| same_principal(&a.by, approver))
        {
            return Err(WorkflowError::AlreadyApproved(principal_key(approver)));
        }
        Ok(if completes {
            ApprovalOutcome::ExecuteTransition
        } else {
            ApprovalOutcome::AwaitingMore
        })
    }

    pub fn reject(
        &self,
        reviewer: &Actor,
        now: DateTime<Utc>,
        current: &Binding,
    ) -> Result<(), WorkflowError> {
        self.check_open(now, current)?;
        if same_principal(reviewer, &self.requester) {
            return Err(WorkflowError::OwnRequest);
        }
        Ok(())
    }

    /// Cancelling is allowed after expiry or a binding change too: the requester withdrawing
    /// a dead request is harmless, so only a final status and the requester's identity matter.
    pub fn cancel(&self, principal: &Actor) -> Result<(), WorkflowError> {
        if self.status.is_final() {
            return Err(WorkflowError::AlreadyFinal(self.status));
        }
        if !same_principal(principal, &self.requester) {
            return Err(WorkflowError::NotRequester);
        }
        Ok(())
    }

    /// The system principal's sweep: the status the request should be moved to because it
    /// expired or its binding no longer holds, if any.
    pub fn sweep(&self, now: DateTime<Utc>, current: &Binding) -> Option<RequestStatus> {
        match self.check_open(now, current) {
            Ok(()) | Err(WorkflowError::AlreadyFinal(_)) => None,
            Err(WorkflowError::Expired(_)) => Some(RequestStatus::Expired),
            Err(_) => Some(RequestStatus::Voided),
        }
    }

    /// Records that the request closed (used by the state fold).
    pub fn close(
        &mut self,
        status: RequestStatus,
        by: &Actor,
        at: DateTime<Utc>,
        comment: Option<String>,
    ) {
        self.status = status;
        self.closed_at = Some(at);
        self.closed_by = Some(by.clone());
        self.closing_comment = comment;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(artifact: &str, policies: &str) -> Binding {
        Binding {
            artifact_digest: artifact.into(),
            verification: format!("verified:{artifact}"),
            policy_set_digest: policies.into(),
        }
    }

    fn actor(name: &str) -> Actor {
        Actor {
            subject: name.into(),
            issuer: "https://idp.test".into(),
            display_name: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid timestamp")
    }

    fn request() -> TransitionRequest {
        TransitionRequest::open(
            Opening {
                id: "r1".into(),
                version: 1,
                to_stage: Stage::Production,
                comment: None,
                binding: binding("sha256:a", "sha256:p"),
            },
            &actor("alice"),
            t0(),
            DEFAULT_REQUEST_LIFETIME,
        )
        .expect("positive lifetime")
    }

    #[test]
    fn an_approval_from_someone_else_executes_when_the_policies_say_it_completes() {
        let r = request();
        let b = binding("sha256:a", "sha256:p");
        assert_eq!(
            r.approve(&actor("bob"), t0(), &b, true),
            Ok(ApprovalOutcome::ExecuteTransition)
        );
        assert_eq!(
            r.approve(&actor("bob"), t0(), &b, false),
            Ok(ApprovalOutcome::AwaitingMore)
        );
        let mut closed = r.clone();
        closed.close(RequestStatus::Approved, &actor("bob"), t0(), None);
        assert_eq!(
            closed.approve(&actor("carol"), t0(), &b, true),
            Err(WorkflowError::AlreadyFinal(RequestStatus::Approved))
        );
    }

    #[test]
    fn nobody_approves_or_rejects_their_own_request() {
        let r = request();
        let b = binding("sha256:a", "sha256:p");
        assert_eq!(
            r.approve(&actor("alice"), t0(), &b, true),
            Err(WorkflowError::OwnRequest)
        );
        assert_eq!(
            r.reject(&actor("alice"), t0(), &b),
            Err(WorkflowError::OwnRequest)
        );
        // Same subject from another issuer is another principal.
        let other = Actor {
            issuer: "https://other.test".into(),
            ..actor("alice")
        };
        assert!(r.approve(&other, t0(), &b, true).is_ok());
    }

    #[test]
    fn one_principal_counts_once() {
        let mut r = request();
        r.approvals.push(Approval {
            by: actor("bob"),
            at: t0(),
            comment: None,
        });
        let b = binding("sha256:a", "sha256:p");
        assert_eq!(
            r.approve(&actor("bob"), t0(), &b, true),
            Err(WorkflowError::AlreadyApproved(
                "bob@https://idp.test".into()
            ))
        );
        assert!(r.approve(&actor("carol"), t0(), &b, true).is_ok());
    }

    #[test]
    fn a_changed_artifact_or_verification_voids_the_request_but_a_policy_change_does_not() {
        let r = request();
        assert_eq!(
            r.approve(&actor("bob"), t0(), &binding("sha256:b", "sha256:p"), true),
            Err(WorkflowError::BindingChanged("artifact digest"))
        );
        let mut failed = binding("sha256:a", "sha256:p");
        failed.verification = "failed".into();
        assert_eq!(
            r.approve(&actor("bob"), t0(), &failed, true),
            Err(WorkflowError::BindingChanged("artifact verification"))
        );
        assert_eq!(r.sweep(t0(), &failed), Some(RequestStatus::Voided));
        // Approval is decided under the policies in force now; the request stays valid.
        assert_eq!(
            r.approve(&actor("bob"), t0(), &binding("sha256:a", "sha256:q"), true),
            Ok(ApprovalOutcome::ExecuteTransition)
        );
        assert_eq!(r.sweep(t0(), &binding("sha256:a", "sha256:q")), None);
    }

    #[test]
    fn requests_expire_after_their_lifetime() {
        let r = request();
        let b = binding("sha256:a", "sha256:p");
        let late = t0() + DEFAULT_REQUEST_LIFETIME;
        assert_eq!(r.sweep(late - Duration::seconds(1), &b), None);
        assert!(r.is_open(late - Duration::seconds(1)));
        assert!(!r.is_open(late));
        assert_eq!(
            r.approve(&actor("bob"), late, &b, true),
            Err(WorkflowError::Expired(late))
        );
        assert_eq!(r.sweep(late, &b), Some(RequestStatus::Expired));
        let opening = Opening {
            id: "r2".into(),
            version: 1,
            to_stage: Stage::Staging,
            comment: None,
            binding: b,
        };
        assert_eq!(
            TransitionRequest::open(opening, &actor("a"), t0(), Duration::zero()),
            Err(WorkflowError::NonPositiveLifetime)
        );
    }

    #[test]
    fn only_the_requester_cancels_and_only_while_pending() {
        let mut r = request();
        assert_eq!(r.cancel(&actor("bob")), Err(WorkflowError::NotRequester));
        assert_eq!(r.cancel(&actor("alice")), Ok(()));
        r.close(RequestStatus::Cancelled, &actor("alice"), t0(), None);
        assert_eq!(
            r.cancel(&actor("alice")),
            Err(WorkflowError::AlreadyFinal(RequestStatus::Cancelled))
        );
        assert_eq!(
            WorkflowError::AlreadyFinal(RequestStatus::Cancelled).code(),
            "REQUEST_ALREADY_DECIDED"
        );
        assert_eq!(
            RequestStatus::parse("Pending"),
            Some(RequestStatus::Pending)
        );
    }
}
