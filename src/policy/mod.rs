//! Authorization: who may do what to which model, decided by Cedar policies in `policies/`.
//!
//! The service asks [`PolicyEngine::authorize`] after `domain::decide` has accepted a command and
//! before anything is appended; the returned [`Decision`] is stored with the event, so the audit
//! trail names the policies (by their `@id`) and the exact policy set (by digest) behind every
//! write. This module depends on `domain` for the state it describes to Cedar and on nothing
//! above it; callers hand it a plain [`PrincipalInfo`] rather than the auth module's type.
//!
//! - [`engine`]: loading, Strict validation, `@id` re-keying, digest, hot reload, `authorize`.
//! - [`entities`]: `ModelState` and the principal as Cedar entities and context.
//! - [`question`]: what the service asks ([`AuthzQuestion`]) and the answer it records.
//! - [`testing`]: policy test cases (`model-ledger policy test FILE`).
//!
//! See `docs/policies.md` for the schema, the shipped policies and the quality-gate design.

pub mod authorizer;
pub mod engine;
pub mod entities;
pub mod question;
pub mod testing;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ModelState, Stage};

pub use engine::{PolicyEngine, ValidationReport, validate_dir};
pub use question::{AccessDecision, AllowAll, Authorizer, AuthzQuestion, Caller};
pub use testing::{CaseOutcome, PolicyTestReport, run_policy_tests};

/// The authenticated caller, as the policy engine needs it. The service builds this from the
/// auth module's principal so the two modules can change independently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalInfo {
    pub subject: String,
    pub issuer: String,
    /// Group names exactly as the identity provider sent them; [`GroupNames`] maps the four
    /// roles onto the canonical Cedar groups.
    pub groups: Vec<String>,
    pub is_service_account: bool,
    pub display_name: Option<String>,
}

/// The IdP group names that hold the four roles. Policies always refer to the canonical ids
/// (`ModelLedger::Group::"ml-admins"` …); these names say which IdP group becomes which id, so
/// a deployment can use its own group names without editing policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNames {
    pub readers: String,
    pub ci: String,
    pub admins: String,
    pub release_managers: String,
}

impl GroupNames {
    pub const CANONICAL_READERS: &'static str = "ml-readers";
    pub const CANONICAL_CI: &'static str = "ml-ci";
    pub const CANONICAL_ADMINS: &'static str = "ml-admins";
    pub const CANONICAL_RELEASE_MANAGERS: &'static str = "ml-release-managers";
    pub const CANONICAL: [&'static str; 4] = [
        Self::CANONICAL_READERS,
        Self::CANONICAL_CI,
        Self::CANONICAL_ADMINS,
        Self::CANONICAL_RELEASE_MANAGERS,
    ];

    /// The Cedar group ids a principal with these IdP groups belongs to.
    ///
    /// An IdP group configured for a role becomes that role's canonical id (one IdP group may
    /// hold several roles). Any other IdP group is passed through under its own name, except a
    /// name equal to a canonical id: if admins are configured as `corp-ml-admins`, an IdP group
    /// that happens to be called `ml-admins` must not grant admin rights.
    pub fn cedar_groups(&self, idp_groups: &[String]) -> Vec<String> {
        let roles = [
            (&self.readers, Self::CANONICAL_READERS),
            (&self.ci, Self::CANONICAL_CI),
            (&self.admins, Self::CANONICAL_ADMINS),
            (&self.release_managers, Self::CANONICAL_RELEASE_MANAGERS),
        ];
        let mut out: Vec<String> = Vec::new();
        for group in idp_groups {
            let mut mapped = false;
            for (configured, canonical) in roles {
                if group == configured {
                    out.push(canonical.to_string());
                    mapped = true;
                }
            }
            if !mapped && !Self::CANONICAL.contains(&group.as_str()) {
                out.push(group.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl Default for GroupNames {
    fn default() -> Self {
        GroupNames {
            readers: Self::CANONICAL_READERS.into(),
            ci: Self::CANONICAL_CI.into(),
            admins: Self::CANONICAL_ADMINS.into(),
            release_managers: Self::CANONICAL_RELEASE_MANAGERS.into(),
        }
    }
}

/// Request facts that are not part of any entity.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzContext {
    pub from_stage: Option<Stage>,
    pub to_stage: Option<Stage>,
    pub comment: Option<String>,
    pub now: DateTime<Utc>,
    /// Set for `RenameModel` only (the policies' `context.rename`).
    pub rename: Option<RenameFacts>,
    /// Set for the approval-workflow actions (the policies' `context.request`).
    pub request: Option<RequestFacts>,
}

/// The transition request an approval-workflow decision is about (`context.request` in the
/// schema): who asked, for which stage, how long ago, who approved so far, and whether the
/// approval being decided would complete it (execute the transition). The N-of-M rules are
/// written against `approvals_so_far` and `executes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// "" for a request being opened.
    pub id: String,
    pub requester_subject: String,
    pub requester_issuer: String,
    pub to_stage: Stage,
    pub age_seconds: i64,
    /// Distinct approvals recorded before this decision.
    pub approvals_so_far: i64,
    /// `subject@issuer` of each approver so far.
    pub approvers: Vec<String>,
    /// True when the approval being decided would execute the transition.
    pub executes: bool,
}

/// What a rename would change about what `models:/NAME/...` serves, for the policies to judge
/// (`context.rename` in the schema). The service finds these out before asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenameFacts {
    pub new_name: String,
    /// The model has a version in Staging or Production, or an alias: renaming it moves what
    /// serving code loads by name.
    pub holds_stage_or_alias: bool,
    /// Another model answered under `new_name` before: taking the name over makes the old
    /// `models:/` URIs load a model no rule of the old one admitted.
    pub new_name_used_before: bool,
}

/// One quality gate a `TransitionStage` decision was checked against, recorded in the decision
/// so the audit trail says which thresholds a promotion met (or missed), not only that it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateCheck {
    pub metric: String,
    /// The model's `gate.<metric>` tag value as written.
    pub threshold: String,
    /// The version's value for the metric; `None` when the version has no such metric.
    pub value: Option<f64>,
}

/// One question to the engine: may `principal` do `action` to this model (or version)?
#[derive(Debug, Clone)]
pub struct AuthzRequest<'a> {
    pub principal: &'a PrincipalInfo,
    /// A Cedar action name, e.g. `Command::action_name()` or "ReadModel".
    pub action: &'a str,
    /// The model the request is about; "" for registry-wide reads (e.g. the whole audit log).
    pub model_name: &'a str,
    /// The model's state; `None` when it does not exist yet (CreateModel) or for registry-wide
    /// reads.
    pub model: Option<&'a ModelState>,
    /// `Some` makes the resource the `ModelVersion` (child of the model) instead of the model.
    pub version: Option<u64>,
    pub context: AuthzContext,
}

/// The outcome of one authorization, recorded with the event it allowed (or in the denial log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub action: String,
    /// Cedar uid text, e.g. `ModelLedger::User::"alice@https://idp.example.com"`.
    pub principal: String,
    /// Cedar uid text, e.g. `ModelLedger::ModelVersion::"fraud/3"`.
    pub resource: String,
    /// The `@id`s of the determining policies: the permits that allowed, or the forbids that
    /// denied. Empty for a default deny.
    pub policy_ids: Vec<String>,
    pub reason: String,
    /// Evaluation errors (a policy that errors is skipped by Cedar, which can only deny more).
    pub errors: Vec<String>,
    /// SHA-256 (hex) of the policy directory's schema and policy files.
    pub policy_set_digest: String,
    /// The request facts the principal uid and resource do not carry, kept so `policy replay`
    /// can ask a candidate policy set the same question later. Absent in decisions recorded
    /// before this field existed; replay then treats the principal as having no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RecordedRequest>,
    /// The quality gates a stage transition was checked against (empty for other actions and
    /// for models without gates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateCheck>,
}

/// What was asked, beyond principal, action and resource (see [`Decision::request`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The IdP group names the caller presented (before mapping to Cedar groups).
    pub groups: Vec<String>,
    pub is_service_account: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_stage: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_stage: Option<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<RenameFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestFacts>,
}

/// Why a policy directory could not be loaded or tested. Every variant that comes from a file
/// names it (and the line, when Cedar gives one; 0 means unknown).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: expected exactly one .cedarschema file, found {found}", dir.display())]
    SchemaFileCount { dir: PathBuf, found: usize },
    #[error("{}: no .cedar policy files", dir.display())]
    NoPolicies { dir: PathBuf },
    #[error("{}:{line}: invalid schema: {message}", file.display())]
    Schema {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: cannot parse policy: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// A policy that parses but breaks a loading rule (missing or duplicate `@id`, template).
    #[error("{}:{line}: {message}", file.display())]
    Policy {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: policy \"{policy_id}\" fails validation against the schema: {message}{}",
        file.display(), more_suffix(more))]
    Validation {
        file: PathBuf,
        line: usize,
        policy_id: String,
        message: String,
        /// Further validation errors, each already formatted as `file:line: …`.
        more: Vec<String>,
    },
    #[error("{}: {message}", file.display())]
    Cases { file: PathBuf, message: String },
    #[error("internal policy engine error: {0}")]
    Internal(String),
}

fn more_suffix(more: &[String]) -> String {
    if more.is_empty() {
        String::new()
    } else {
        format!("; also: {}", more.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_group_names_map_to_canonical_ids() {
        let names = GroupNames {
            readers: "corp-readers".into(),
            ci: "corp-ci".into(),
            admins: "corp-admins".into(),
            release_managers: "corp-admins".into(),
        };
        assert_eq!(
            names.cedar_groups(&["corp-admins".into(), "data-science".into()]),
            vec!["data-science", "ml-admins", "ml-release-managers"],
            "one IdP group may hold two roles; other groups pass through"
        );
        assert_eq!(
            names.cedar_groups(&["ml-admins".into(), "ml-readers".into()]),
            Vec::<String>::new(),
            "canonical names are not back doors when other IdP groups hold the roles"
        );
        assert_eq!(
            GroupNames::default().cedar_groups(&["ml-ci".into()]),
            vec!["ml-ci"]
        );
    }
}
