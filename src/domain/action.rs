//! The actions a caller can be authorized for, as one closed enum.
//!
//! Each variant is a Cedar action in `policies/model_ledger.cedarschema`. Keeping them in an
//! enum instead of strings means a handler cannot ask about an action the schema does not know
//! (a typo would otherwise be an always-denied request that only shows up in production), and
//! the compiler lists every place that must change when an action is added. The policy engine
//! still speaks strings, because policy test files and replays name actions as text.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    CreateModel,
    UpdateModel,
    /// Renaming changes what `models:/NAME/...` serves, so it is its own action (see
    /// policies/governance.cedar), not a kind of update.
    RenameModel,
    /// Setting or deleting a tag the policies read as a rule (`gate.<metric>`): the people a
    /// gate holds back must not be able to lower it.
    ChangeGate,
    DeleteModel,
    CreateVersion,
    UpdateVersion,
    DeleteVersion,
    TransitionStage,
    SetAlias,
    DeleteAlias,
    VerifyArtifact,
    ReadModel,
    ReadAudit,
    ReadTracking,
    WriteTracking,
    // --- webhooks (issue #18) ---
    /// Creating, updating (URL, events, secret, status), deleting and testing a webhook, and
    /// redelivering: a webhook sends registry events, signed, to an address of the caller's
    /// choosing, so it is admin-only by default (policies/webhooks.cedar).
    ManageWebhooks,
    /// Listing webhooks and their delivery history (URLs and receivers' answers; never secrets).
    ReadWebhooks,
    // --- run evidence (issue #16) ---
    /// Recording the pinned manifest of a run-based version after registration: done by the
    /// server itself (the system principal), see policies/run_evidence.cedar.
    PinRunArtifacts,
    /// Recording metrics for an existing version after it was created (e.g. an evaluation job
    /// that runs after `push`); quality gates read them. See policies/ci.cedar.
    RecordMetrics,
    /// Recording an OpenSSF model signature for a version (`POST .../signatures`): only trusted
    /// signers' signatures are recorded, bound to the version's files. See policies/ci.cedar.
    RecordSignature,
    // --- approval workflow (issue #17); see policies/approvals.cedar ---
    /// Asking for a version to move to a stage (a transition request).
    RequestTransition,
    /// Approving a transition request; the approval that completes it also needs
    /// `TransitionStage` for the same move.
    ApproveTransition,
    RejectTransition,
    /// Withdrawing one's own request.
    CancelTransition,
    /// Closing an expired or void request: done by the server itself (the system principal).
    ExpireRequest,
    /// Adding, editing or deleting a comment on a version.
    Comment,
}

impl Action {
    pub const ALL: [Action; 27] = [
        Action::CreateModel,
        Action::UpdateModel,
        Action::RenameModel,
        Action::ChangeGate,
        Action::DeleteModel,
        Action::CreateVersion,
        Action::UpdateVersion,
        Action::DeleteVersion,
        Action::TransitionStage,
        Action::SetAlias,
        Action::DeleteAlias,
        Action::VerifyArtifact,
        Action::ReadModel,
        Action::ReadAudit,
        Action::ReadTracking,
        Action::WriteTracking,
        // webhooks (issue #18)
        Action::ManageWebhooks,
        Action::ReadWebhooks,
        // run evidence (issue #16)
        Action::PinRunArtifacts,
        Action::RecordMetrics,
        Action::RecordSignature,
        // approval workflow (issue #17)
        Action::RequestTransition,
        Action::ApproveTransition,
        Action::RejectTransition,
        Action::CancelTransition,
        Action::ExpireRequest,
        Action::Comment,
    ];

    /// The Cedar action id (`ModelLedger::Action::"<this>"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateModel => "CreateModel",
            Action::UpdateModel => "UpdateModel",
            Action::RenameModel => "RenameModel",
            Action::ChangeGate => "ChangeGate",
            Action::DeleteModel => "DeleteModel",
            Action::CreateVersion => "CreateVersion",
            Action::UpdateVersion => "UpdateVersion",
            Action::DeleteVersion => "DeleteVersion",
            Action::TransitionStage => "TransitionStage",
            Action::SetAlias => "SetAlias",
            Action::DeleteAlias => "DeleteAlias",
            Action::VerifyArtifact => "VerifyArtifact",
            Action::ReadModel => "ReadModel",
            Action::ReadAudit => "ReadAudit",
            Action::ReadTracking => "ReadTracking",
            Action::WriteTracking => "WriteTracking",
            // webhooks (issue #18)
            Action::ManageWebhooks => "ManageWebhooks",
            Action::ReadWebhooks => "ReadWebhooks",
            // run evidence (issue #16)
            Action::PinRunArtifacts => "PinRunArtifacts",
            Action::RecordMetrics => "RecordMetrics",
            Action::RecordSignature => "RecordSignature",
            // approval workflow (issue #17)
            Action::RequestTransition => "RequestTransition",
            Action::ApproveTransition => "ApproveTransition",
            Action::RejectTransition => "RejectTransition",
            Action::CancelTransition => "CancelTransition",
            Action::ExpireRequest => "ExpireRequest",
            Action::Comment => "Comment",
        }
    }

    /// Whether the action only reads (reads are checked before existence is revealed and their
    /// denials are coalesced; writes are checked against the model's current state).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Action::ReadModel | Action::ReadAudit | Action::ReadTracking | Action::ReadWebhooks
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and logs compare an action with its Cedar name.
impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant must be an action the shipped schema declares, or every request for it
    /// would be denied by Cedar's validation.
    #[test]
    fn every_action_is_declared_in_the_shipped_schema() {
        let schema = include_str!("../../policies/model_ledger.cedarschema");
        for action in Action::ALL {
            assert!(
                schema
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|word| word == action.as_str()),
                "{action} is not in the schema"
            );
        }
    }
}
