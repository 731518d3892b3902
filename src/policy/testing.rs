//! Policy test cases: a JSON file of requests and expected outcomes, run against a policy
//! directory through the same [`PolicyEngine::authorize`] path the server uses.
//!
//! `model-ledger policy test FILE` and the unit tests both call [`run_policy_tests`], so a
//! policy edit that changes a shipped rule fails CI. The file format is documented in
//! `docs/policies.md`; `policies/tests/default_policies.json` covers every shipped policy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    AuthzContext, AuthzRequest, Decision, GroupNames, PolicyEngine, PolicyError, PrincipalInfo,
};
use crate::domain::state::Verification;
use crate::domain::{Actor, ModelName, ModelState, Stage, TagKey, VersionState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    /// IdP group names to test with; defaults to the canonical names.
    #[serde(default)]
    groups: Option<GroupNames>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: CasePrincipal,
    action: String,
    resource: CaseResource,
    #[serde(default)]
    context: CaseContext,
    expect: Expect,
    /// If given, the decision's `policy_ids` must equal this list (sorted).
    #[serde(default)]
    expect_policies: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePrincipal {
    subject: String,
    issuer: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    service_account: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseActor {
    subject: String,
    issuer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseResource {
    /// "" for registry-wide requests.
    #[serde(default)]
    model: String,
    /// False for CreateModel: the model is not passed to the engine. Defaults to whether
    /// `model` is non-empty.
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    created_by: Option<CaseActor>,
    #[serde(default)]
    version: Option<CaseVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseVersion {
    #[serde(default = "one")]
    number: u64,
    #[serde(default = "stage_none")]
    stage: String,
    created_by: CaseActor,
    #[serde(default)]
    artifact_verified: bool,
    /// A run-registered version's pin status ("pending" or "pinned"); absent for others.
    #[serde(default)]
    artifact_pin: Option<String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// The version's recorded model signature; absent: unsigned.
    #[serde(default)]
    signing: Option<CaseSigning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSigning {
    /// "verified" or "mismatch".
    status: String,
    #[serde(default = "key_method")]
    method: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    san: Vec<String>,
    #[serde(default)]
    issuer: Option<String>,
}

fn key_method() -> String {
    "key".into()
}

fn one() -> u64 {
    1
}

fn stage_none() -> String {
    "None".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseContext {
    #[serde(default)]
    from_stage: Option<String>,
    #[serde(default)]
    to_stage: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    /// For `RenameModel` cases: `{"new_name", "holds_stage_or_alias", "new_name_used_before"}`.
    #[serde(default)]
    rename: Option<super::RenameFacts>,
    /// For the approval-workflow actions: the request (see `RequestFacts`).
    #[serde(default)]
    request: Option<super::RequestFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseOutcome {
    pub name: String,
    pub expected: Expect,
    pub passed: bool,
    /// Why a failed case failed.
    pub failure: Option<String>,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyTestReport {
    pub policy_set_digest: String,
    pub cases: Vec<CaseOutcome>,
}

impl PolicyTestReport {
    pub fn all_passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &CaseOutcome> {
        self.cases.iter().filter(|c| !c.passed)
    }
}

impl fmt::Display for PolicyTestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            match &case.failure {
                None => writeln!(f, "PASS {}", case.name)?,
                Some(why) => writeln!(f, "FAIL {}: {why}", case.name)?,
            }
        }
        let failed = self.failed().count();
        write!(
            f,
            "{} cases, {} passed, {failed} failed (policy set {})",
            self.cases.len(),
            self.cases.len() - failed,
            self.policy_set_digest
        )
    }
}

/// Loads `dir` and runs every case in `cases_file`. Errors only when the policies or the case
/// file cannot be loaded; failing cases are reported, not returned as errors.
pub fn run_policy_tests(dir: &Path, cases_file: &Path) -> Result<PolicyTestReport, PolicyError> {
    let text = std::fs::read_to_string(cases_file).map_err(|source| PolicyError::Io {
        path: cases_file.to_path_buf(),
        source,
    })?;
    let cases: CasesFile = serde_json::from_str(&text).map_err(|e| PolicyError::Cases {
        file: cases_file.to_path_buf(),
        message: e.to_string(),
    })?;
    let engine = PolicyEngine::load(dir, cases.groups.unwrap_or_default())?;
    let bad_case = |name: &str, message: String| PolicyError::Cases {
        file: cases_file.to_path_buf(),
        message: format!("case \"{name}\": {message}"),
    };

    let mut outcomes = Vec::with_capacity(cases.cases.len());
    for case in &cases.cases {
        let model = case_model(&case.resource).map_err(|m| bad_case(&case.name, m))?;
        let stage = |s: &Option<String>| {
            s.as_deref()
                .map(Stage::parse)
                .transpose()
                .map_err(|e| bad_case(&case.name, e.0))
        };
        let principal = PrincipalInfo {
            subject: case.principal.subject.clone(),
            issuer: case.principal.issuer.clone(),
            groups: case.principal.groups.clone(),
            is_service_account: case.principal.service_account,
            display_name: None,
        };
        let request = AuthzRequest {
            principal: &principal,
            action: &case.action,
            model_name: &case.resource.model,
            model: model.as_ref(),
            version: case.resource.version.as_ref().map(|v| v.number),
            context: AuthzContext {
                from_stage: stage(&case.context.from_stage)?,
                to_stage: stage(&case.context.to_stage)?,
                comment: case.context.comment.clone(),
                now: Utc::now(),
                rename: case.context.rename.clone(),
                request: case.context.request.clone(),
            },
        };
        let decision = engine.authorize(&request);
        let mut failure = None;
        let got = if decision.allowed {
            Expect::Allow
        } else {
            Expect::Deny
        };
        if got != case.expect {
            failure = Some(format!(
                "expected {:?}, got {:?}: {}",
                case.expect, got, decision.reason
            ));
        } else if let Some(expected) = &case.expect_policies {
            let mut expected = expected.clone();
            expected.sort();
            if expected != decision.policy_ids {
                failure = Some(format!(
                    "expected policies {expected:?}, got {:?}: {}",
                    decision.policy_ids, decision.reason
                ));
            }
        }
        outcomes.push(CaseOutcome {
            name: case.name.clone(),
            expected: case.expect,
            passed: failure.is_none(),
            failure,
            decision,
        });
    }
    Ok(PolicyTestReport {
        policy_set_digest: engine.policy_set_digest(),
        cases: outcomes,
    })
}

fn tags(raw: &BTreeMap<String, String>) -> Result<BTreeMap<TagKey, String>, String> {
    raw.iter()
        .map(|(k, v)| Ok((TagKey::parse(k.clone()).map_err(|e| e.0)?, v.clone())))
        .collect()
}

fn actor(a: &CaseActor) -> Actor {
    Actor {
        subject: a.subject.clone(),
        issuer: a.issuer.clone(),
        display_name: None,
    }
}

/// The `ModelState` a case describes, built with the same types the service passes, so cases
/// exercise the real entity-building code.
fn case_model(resource: &CaseResource) -> Result<Option<ModelState>, String> {
    let exists = resource.exists.unwrap_or(!resource.model.is_empty());
    if !exists {
        return Ok(None);
    }
    let at: DateTime<Utc> = DateTime::UNIX_EPOCH;
    let created_by = resource
        .created_by
        .as_ref()
        .map(actor)
        .unwrap_or_else(Actor::system);
    let mut versions = BTreeMap::new();
    if let Some(v) = &resource.version {
        versions.insert(
            v.number,
            VersionState {
                version: v.number,
                source: String::new(),
                run_id: None,
                description: String::new(),
                tags: tags(&v.tags)?,
                metrics: v.metrics.clone(),
                signature: None,
                input_example: None,
                artifact: None,
                verification: if v.artifact_verified {
                    Verification::Verified {
                        at,
                        digest: "sha256:test".into(),
                    }
                } else {
                    Verification::NotVerified
                },
                stage: Stage::parse(&v.stage).map_err(|e| e.0)?,
                created_at: at,
                created_by: actor(&v.created_by),
                updated_at: at,
                deleted: false,
                run_pin: v.artifact_pin.clone(),
                run_location: None,
                signing: v
                    .signing
                    .as_ref()
                    .map(|s| crate::domain::state::SigningState {
                        status: s.status.clone(),
                        signer: crate::domain::signing::SignerIdentity {
                            method: s.method.clone(),
                            key_id: s.key_id.clone(),
                            subject: None,
                            san: s.san.clone(),
                            issuer: s.issuer.clone(),
                        },
                        statement_digest: String::new(),
                        at,
                    }),
            },
        );
    }
    Ok(Some(ModelState {
        model_id: Uuid::nil(),
        name: ModelName::parse(resource.model.clone()).map_err(|e| e.0)?,
        description: String::new(),
        tags: tags(&resource.tags)?,
        created_at: at,
        created_by,
        updated_at: at,
        deleted: false,
        last_version: resource.version.as_ref().map(|v| v.number).unwrap_or(0),
        versions,
        aliases: BTreeMap::new(),
        stage_entries: BTreeMap::new(),
        stream_version: 1,
        requests: BTreeMap::new(),
        comments: BTreeMap::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_cases_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let report = run_policy_tests(
            &root.join("policies"),
            &root.join("policies/tests/default_policies.json"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.all_passed(), "{report}");
        assert!(report.cases.len() > 40);
    }

    /// The most expensive request (a Production promotion with two gates = three Cedar
    /// evaluations) is allowed when every rule is met. Its speed is measured by
    /// `examples/authz_bench.rs`, not here.
    #[test]
    fn gated_production_promotion_is_allowed_when_every_rule_holds() {
        let engine = PolicyEngine::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            GroupNames::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let resource: CaseResource = serde_json::from_value(serde_json::json!({
            "model": "fraud",
            "tags": {"gate.f1": "0.78", "gate.auc": "0.85", "team": "risk"},
            "version": {
                "number": 3, "stage": "Staging", "artifact_verified": true,
                "created_by": {"subject": "ci-bot", "issuer": "https://idp.example.com"},
                "metrics": {"f1": 0.81, "auc": 0.9, "loss": 0.12},
                "tags": {"run": "abc"}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let model = case_model(&resource).unwrap_or_else(|e| panic!("{e}"));
        let rita = PrincipalInfo {
            subject: "rita".into(),
            issuer: "https://idp.example.com".into(),
            groups: vec![
                "ml-release-managers".into(),
                "ml-readers".into(),
                "team-x".into(),
            ],
            is_service_account: false,
            display_name: Some("Rita".into()),
        };
        let req = AuthzRequest {
            principal: &rita,
            action: "TransitionStage",
            model_name: "fraud",
            model: model.as_ref(),
            version: Some(3),
            context: AuthzContext {
                from_stage: Some(Stage::Staging),
                to_stage: Some(Stage::Production),
                comment: Some("weekly release".into()),
                now: Utc::now(),
                rename: None,
                request: None,
            },
        };
        assert!(
            engine.authorize(&req).allowed,
            "{:?}",
            engine.authorize(&req)
        );
    }
}
