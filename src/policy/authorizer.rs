//! The policy engine as the command path's authorization step, and the shipped default
//! policies embedded in the binary for installs that have no `policies/` directory.

use std::path::{Path, PathBuf};

use super::question::{AccessDecision, Authorizer, AuthzQuestion};
use super::{AuthzContext, AuthzRequest, PolicyEngine, PolicyError, PrincipalInfo};

impl Authorizer for PolicyEngine {
    fn authorize(&self, question: &AuthzQuestion<'_>) -> AccessDecision {
        let principal = PrincipalInfo {
            subject: question.caller.actor.subject.clone(),
            issuer: question.caller.actor.issuer.clone(),
            groups: question.caller.groups.clone(),
            is_service_account: question.caller.service_account,
            display_name: question.caller.actor.display_name.clone(),
        };
        let decision = PolicyEngine::authorize(
            self,
            &AuthzRequest {
                principal: &principal,
                action: question.action.as_str(),
                model_name: question.model_name,
                model: question.model,
                version: question.version,
                context: AuthzContext {
                    from_stage: question.from_stage,
                    to_stage: question.to_stage,
                    comment: question.comment.map(str::to_string),
                    now: chrono::Utc::now(),
                    rename: question.rename.cloned(),
                    request: question.request.cloned(),
                },
            },
        );
        AccessDecision {
            allowed: decision.allowed,
            policy_ids: decision.policy_ids.clone(),
            reason: decision.reason.clone(),
            record: serde_json::to_value(&decision).unwrap_or_default(),
        }
    }

    fn generation(&self) -> u64 {
        PolicyEngine::generation(self)
    }
}

/// The shipped policy files, so a binary run outside the source tree has the defaults.
pub const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    (
        "model_ledger.cedarschema",
        include_str!("../../policies/model_ledger.cedarschema"),
    ),
    ("admins.cedar", include_str!("../../policies/admins.cedar")),
    ("ci.cedar", include_str!("../../policies/ci.cedar")),
    (
        "governance.cedar",
        include_str!("../../policies/governance.cedar"),
    ),
    (
        "production.cedar",
        include_str!("../../policies/production.cedar"),
    ),
    (
        "readers.cedar",
        include_str!("../../policies/readers.cedar"),
    ),
    (
        "release_managers.cedar",
        include_str!("../../policies/release_managers.cedar"),
    ),
    // webhooks (issue #18)
    (
        "webhooks.cedar",
        include_str!("../../policies/webhooks.cedar"),
    ),
    // run evidence (issue #16)
    (
        "run_evidence.cedar",
        include_str!("../../policies/run_evidence.cedar"),
    ),
    // approval workflow (issue #17)
    (
        "approvals.cedar",
        include_str!("../../policies/approvals.cedar"),
    ),
];

/// The directory to load policies from: the one configured, else `./policies` when it exists,
/// else the embedded defaults written (once) to `<data_dir>/policies`.
pub fn resolve_policy_dir(
    configured: Option<&Path>,
    data_dir: &Path,
) -> Result<PathBuf, PolicyError> {
    if let Some(dir) = configured {
        return Ok(dir.to_path_buf());
    }
    let local = PathBuf::from("policies");
    if local.join("model_ledger.cedarschema").is_file() {
        return Ok(local);
    }
    let dir = data_dir.join("policies");
    if !dir.join("model_ledger.cedarschema").is_file() {
        std::fs::create_dir_all(&dir).map_err(|source| PolicyError::Io {
            path: dir.clone(),
            source,
        })?;
        for (file, text) in EMBEDDED_POLICIES {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(|source| PolicyError::Io { path, source })?;
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_policy_file_is_embedded() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
                .expect("policies dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED_POLICIES
            .iter()
            .map(|(f, _)| f.to_string())
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn embedded_defaults_are_written_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        // Not the cwd's ./policies: a configured-elsewhere data dir gets its own copy.
        std::fs::create_dir_all(&policies).expect("mkdir");
        for (file, text) in EMBEDDED_POLICIES {
            std::fs::write(policies.join(file), text).expect("write");
        }
        let engine = PolicyEngine::load(&policies, Default::default());
        assert!(engine.is_ok(), "{:?}", engine.err());
    }
}
