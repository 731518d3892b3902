//! What the command and query paths ask the policy engine, and what it answers.
//!
//! These types sit in `policy` (not in `service`) so the engine can implement [`Authorizer`]
//! without importing the layer that calls it: `service` depends on `policy`, never the other way
//! round. A question names a typed [`Action`]; the answer carries the full decision record that
//! is stored with the event it allowed, or in the access-decision log when it refused.

use serde::Serialize;

use crate::domain::events::Actor;
use crate::domain::{Action, ModelState, Stage};

pub use super::{RenameFacts, RequestFacts};

/// Who is calling, as the policy engine sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub actor: Actor,
    pub groups: Vec<String>,
    pub service_account: bool,
    /// When the caller's credential expires (Unix seconds); `None` for credentials that do not.
    /// Long-lived responses (the event stream) end then.
    #[serde(skip)]
    pub expires_at: Option<i64>,
}

/// What the authorizer is asked about one request.
pub struct AuthzQuestion<'a> {
    pub caller: &'a Caller,
    pub action: Action,
    /// The model the request is about; "" for registry-wide requests (search, the audit log).
    pub model_name: &'a str,
    /// The model's state, when the policies should see it (writes); `None` for reads, which are
    /// decided before anything about the model is looked up.
    pub model: Option<&'a ModelState>,
    pub version: Option<u64>,
    pub from_stage: Option<Stage>,
    pub to_stage: Option<Stage>,
    pub comment: Option<&'a str>,
    /// Set for `RenameModel`: what the rename would change (see [`RenameFacts`]).
    pub rename: Option<&'a RenameFacts>,
    /// Set for the approval-workflow actions: the request they are about.
    pub request: Option<&'a RequestFacts>,
}

/// An authorization outcome. `record` is stored verbatim in the event (or the denial log).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessDecision {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub record: serde_json::Value,
}

/// The authorization step shared by every command and query.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, question: &AuthzQuestion<'_>) -> AccessDecision;

    /// Changes whenever the policy set does (a reload), so decisions cached under one value
    /// are never reused under another. Authorizers whose answers never change return 0.
    fn generation(&self) -> u64 {
        0
    }
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
                "action": question.action.as_str(),
                "engine": "allow-all",
            }),
        }
    }
}
