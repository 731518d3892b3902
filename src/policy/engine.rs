//! Loading, validating and evaluating the policy set.
//!
//! A policy directory holds exactly one `*.cedarschema` and any number of `*.cedar` files. Loading
//! parses every file, re-keys each policy by its `@id` annotation (Cedar would otherwise number
//! them `policy0…` per file, so ids would collide across files and mean nothing in the audit
//! trail), validates the whole set in Strict mode and refuses on any error. The loaded set sits
//! behind an `Arc` that [`PolicyEngine::reload`] swaps only after the new set validated, so a
//! bad edit never leaves the server without policies.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Authorizer, Decision as CedarDecision, PolicyId, PolicySet, Response, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::entities::{Gate, TypeNames, build_context, build_entities, declared_gates};
use super::{AuthzRequest, Decision, GroupNames, PolicyError};

/// What `model-ledger policy validate` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    pub schema_file: PathBuf,
    pub policy_files: Vec<PathBuf>,
    /// Every policy's `@id`, sorted.
    pub policy_ids: Vec<String>,
    /// Schema and validation warnings; they do not stop loading.
    pub warnings: Vec<String>,
    pub digest: String,
}

/// One validated policy set and everything derived from it once, so `authorize` only builds
/// the per-request entities.
struct Loaded {
    schema: Schema,
    policies: PolicySet,
    /// `@reason` annotation per policy id, surfaced in denial reasons.
    reasons: HashMap<String, String>,
    digest: String,
    types: TypeNames,
}

/// The policy engine. Cloning is cheap and clones share the loaded set, so a reload through
/// any clone is seen by all.
#[derive(Clone)]
pub struct PolicyEngine {
    dir: PathBuf,
    groups: Arc<GroupNames>,
    current: Arc<RwLock<Arc<Loaded>>>,
    authorizer: Arc<Authorizer>,
    /// Bumped by every successful reload (see [`crate::policy::Authorizer::generation`]).
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("dir", &self.dir)
            .field("groups", &self.groups)
            .field("digest", &self.policy_set_digest())
            .finish()
    }
}

impl PolicyEngine {
    /// Loads and validates `dir`; any parse or validation error refuses the whole set.
    pub fn load(dir: &Path, groups: GroupNames) -> Result<Self, PolicyError> {
        let (loaded, _) = load_dir(dir)?;
        Ok(PolicyEngine {
            dir: dir.to_path_buf(),
            groups: Arc::new(groups),
            current: Arc::new(RwLock::new(Arc::new(loaded))),
            authorizer: Arc::new(Authorizer::new()),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        })
    }

    /// Re-reads the directory. On any error the current set stays in force and the error is
    /// returned for the caller to log.
    pub fn reload(&self) -> Result<(), PolicyError> {
        let (loaded, _) = load_dir(&self.dir)?;
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(loaded);
        // Bumped while the new set is in place and before anyone can see the old generation
        // with it: a decision cached from here on is keyed with the new value.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// See [`crate::policy::Authorizer::generation`].
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn policy_set_digest(&self) -> String {
        self.loaded().digest.clone()
    }

    /// The directory this engine loads from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn loaded(&self) -> Arc<Loaded> {
        // A poisoned lock only means a writer panicked between swaps; the Arc inside is whole.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Decides one request. Never fails: anything that prevents evaluation is a deny whose
    /// `errors` say why.
    pub fn authorize(&self, req: &AuthzRequest) -> Decision {
        let loaded = self.loaded();
        loaded.authorize(&self.authorizer, &self.groups, req)
    }
}

impl Loaded {
    fn authorize(
        &self,
        authorizer: &Authorizer,
        groups: &GroupNames,
        req: &AuthzRequest,
    ) -> Decision {
        let principal = self.types.principal_uid(req);
        let action = self.types.action_uid(req.action);
        let resource = self.types.resource_uid(req);
        let mut decision = Decision {
            allowed: false,
            action: req.action.to_string(),
            principal: principal.to_string(),
            resource: resource.to_string(),
            policy_ids: Vec::new(),
            reason: String::new(),
            errors: Vec::new(),
            policy_set_digest: self.digest.clone(),
            request: Some(super::RecordedRequest {
                groups: req.principal.groups.clone(),
                is_service_account: req.principal.is_service_account,
                from_stage: req.context.from_stage,
                to_stage: req.context.to_stage,
                comment: req.context.comment.clone(),
                rename: req.context.rename.clone(),
                request: req.context.request.clone(),
            }),
            gates: Vec::new(),
        };
        let fail = |mut d: Decision, msg: String| {
            d.reason = format!("request could not be evaluated: {msg}");
            d.errors.push(msg);
            d
        };

        let entities = match build_entities(&self.types, groups, &self.schema, req) {
            Ok(e) => e,
            Err(msg) => return fail(decision, msg),
        };
        // Cedar has no "for all", so each declared quality gate is one more request with
        // context.gate set; the decision is an allow only if every request allows.
        // An approval executes a transition, so it is held to the same gates.
        let gates = if req.action == "TransitionStage" || req.action == "ApproveTransition" {
            declared_gates(req.model)
        } else {
            Vec::new()
        };
        decision.gates = gates
            .iter()
            .map(|gate| super::GateCheck {
                metric: gate.metric.clone(),
                threshold: gate.raw_threshold.clone(),
                value: req
                    .version
                    .and_then(|v| req.model.and_then(|m| m.live_version(v)))
                    .and_then(|v| v.metrics.get(&gate.metric).copied()),
            })
            .collect();
        let mut responses: Vec<(Option<&Gate>, Response)> = Vec::with_capacity(1 + gates.len());
        for gate in std::iter::once(None).chain(gates.iter().map(Some)) {
            let request = build_context(req, gate).and_then(|ctx| {
                cedar_policy::Request::new(
                    principal.clone(),
                    action.clone(),
                    resource.clone(),
                    ctx,
                    Some(&self.schema),
                )
                .map_err(|e| format!("request: {e}"))
            });
            match request {
                Ok(r) => responses.push((
                    gate,
                    authorizer.is_authorized(&r, &self.policies, &entities),
                )),
                Err(msg) => return fail(decision, msg),
            }
        }

        for (_, response) in &responses {
            for e in response.diagnostics().errors() {
                let msg = e.to_string();
                if !decision.errors.contains(&msg) {
                    decision.errors.push(msg);
                }
            }
        }
        decision.allowed = responses
            .iter()
            .all(|(_, r)| r.decision() == CedarDecision::Allow);

        let ids = |r: &Response| -> Vec<String> {
            let mut ids: Vec<String> = r.diagnostics().reason().map(|id| id.to_string()).collect();
            ids.sort();
            ids
        };
        if decision.allowed {
            // Every response allowed; the base request's permits are the determining policies.
            decision.policy_ids = responses.first().map(|(_, r)| ids(r)).unwrap_or_default();
            decision.reason = format!("permitted by {}", decision.policy_ids.join(", "));
            return decision;
        }

        // Forbids that do not read context.gate fire identically in every sub-request; name
        // them once, and tag only the gate-specific ones with their gate.
        let base_ids = responses.first().map(|(_, r)| ids(r)).unwrap_or_default();
        let mut explanations: Vec<String> = Vec::new();
        for (gate, response) in responses
            .iter()
            .filter(|(_, r)| r.decision() == CedarDecision::Deny)
        {
            for id in ids(response) {
                if gate.is_some() && base_ids.contains(&id) {
                    continue;
                }
                if !decision.policy_ids.contains(&id) {
                    decision.policy_ids.push(id.clone());
                }
                let mut text = match self.reasons.get(&id) {
                    Some(reason) => format!("{id} ({reason})"),
                    None => id.clone(),
                };
                if let Some(gate) = gate {
                    text.push_str(&format!(
                        " [gate {} >= {}]",
                        gate.metric, gate.raw_threshold
                    ));
                }
                if !explanations.contains(&text) {
                    explanations.push(text);
                }
            }
        }
        decision.policy_ids.sort();
        decision.reason = if explanations.is_empty() {
            format!(
                "no policy permits {} to {} on {}",
                decision.principal, decision.action, decision.resource
            )
        } else {
            format!("forbidden by {}", explanations.join("; "))
        };
        if !decision.errors.is_empty() {
            decision.reason.push_str(&format!(
                " (evaluation errors: {})",
                decision.errors.join("; ")
            ));
        }
        decision
    }
}

/// Validates a policy directory the way [`PolicyEngine::load`] does, for the CLI.
pub fn validate_dir(dir: &Path) -> Result<ValidationReport, PolicyError> {
    load_dir(dir).map(|(_, report)| report)
}

fn read(path: &Path) -> Result<String, PolicyError> {
    fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of a Cedar diagnostic's first label, or 0 when it has none.
fn diagnostic_line(diag: &dyn Diagnostic, text: &str) -> usize {
    diag.labels()
        .and_then(|mut labels| labels.next())
        .map(|label| line_at(text, label.offset()))
        .unwrap_or(0)
}

/// Cedar's message plus its help text, which often says what to write instead.
fn diagnostic_message(diag: &(dyn Diagnostic + '_), display: String) -> String {
    match diag.help() {
        Some(help) => format!("{display} (help: {help})"),
        None => display,
    }
}

struct SourceFile {
    path: PathBuf,
    text: String,
}

fn load_dir(dir: &Path) -> Result<(Loaded, ValidationReport), PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut schema_files = Vec::new();
    let mut policy_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.is_file() {
            continue;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("cedarschema") => schema_files.push(path),
            Some("cedar") => policy_files.push(path),
            _ => {}
        }
    }
    // Sorted so the digest and error order do not depend on directory order.
    policy_files.sort();
    if schema_files.len() != 1 {
        return Err(PolicyError::SchemaFileCount {
            dir: dir.to_path_buf(),
            found: schema_files.len(),
        });
    }
    if policy_files.is_empty() {
        return Err(PolicyError::NoPolicies {
            dir: dir.to_path_buf(),
        });
    }
    let schema_path = schema_files.remove(0);
    let schema_text = read(&schema_path)?;
    let mut warnings = Vec::new();
    let schema = match Schema::from_cedarschema_str(&schema_text) {
        Ok((schema, schema_warnings)) => {
            warnings.extend(schema_warnings.map(|w| format!("{}: {w}", schema_path.display())));
            schema
        }
        Err(e) => {
            return Err(PolicyError::Schema {
                file: schema_path,
                line: diagnostic_line(&e, &schema_text),
                message: diagnostic_message(&e, e.to_string()),
            });
        }
    };

    let mut sources = Vec::with_capacity(policy_files.len());
    for path in policy_files {
        let text = read(&path)?;
        sources.push(SourceFile { path, text });
    }

    let mut policies = PolicySet::new();
    let mut reasons = HashMap::new();
    // policy id → index into `sources`, to locate validation errors.
    let mut origin: HashMap<String, usize> = HashMap::new();
    for (index, source) in sources.iter().enumerate() {
        let parsed = PolicySet::from_str(&source.text).map_err(|e| PolicyError::Parse {
            file: source.path.clone(),
            line: diagnostic_line(&e, &source.text),
            message: diagnostic_message(&e, e.to_string()),
        })?;
        if parsed.templates().next().is_some() {
            return Err(PolicyError::Policy {
                file: source.path.clone(),
                line: 0,
                message: "templates are not supported in the policy directory".into(),
            });
        }
        // from_str numbers policies in source order; sort so errors name the first one.
        let mut in_file: Vec<_> = parsed.policies().collect();
        in_file.sort_by_key(|p| policy_line(&source.text, &p.to_string()));
        for policy in in_file {
            let line = policy_line(&source.text, &policy.to_string());
            let Some(id) = policy.annotation("id").map(str::to_string) else {
                return Err(PolicyError::Policy {
                    file: source.path.clone(),
                    line,
                    message: "policy has no @id(\"…\") annotation; every policy needs one so \
                              decisions can name it"
                        .into(),
                });
            };
            if let Some(first) = origin.get(&id) {
                return Err(PolicyError::Policy {
                    file: source.path.clone(),
                    line,
                    message: format!(
                        "duplicate policy id \"{id}\" (first defined in {})",
                        sources[*first].path.display()
                    ),
                });
            }
            if let Some(reason) = policy.annotation("reason") {
                reasons.insert(id.clone(), reason.to_string());
            }
            policies
                .add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| PolicyError::Policy {
                    file: source.path.clone(),
                    line,
                    message: e.to_string(),
                })?;
            origin.insert(id, index);
        }
    }

    let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    let mut located: Vec<(PathBuf, usize, String, String)> = validation
        .validation_errors()
        .map(|e| {
            let id = e.policy_id().to_string();
            let (file, line) = match origin.get(&id).map(|i| &sources[*i]) {
                Some(src) => (src.path.clone(), diagnostic_line(e, &src.text)),
                None => (dir.to_path_buf(), 0),
            };
            (file, line, id, diagnostic_message(e, e.to_string()))
        })
        .collect();
    located.sort();
    // Strict validation reports one error per action/type environment; the same mistake in a
    // policy that applies to every action would otherwise be listed 14 times.
    let mut distinct: Vec<(PathBuf, usize, String, String)> = Vec::new();
    let mut repeats: Vec<usize> = Vec::new();
    for (file, line, id, message) in located {
        match distinct.last() {
            Some((f, l, i, _)) if *f == file && *l == line && *i == id => {
                if let Some(n) = repeats.last_mut() {
                    *n += 1;
                }
            }
            _ => {
                distinct.push((file, line, id, message));
                repeats.push(0);
            }
        }
    }
    let mut located: Vec<(PathBuf, usize, String, String)> = distinct
        .into_iter()
        .zip(repeats)
        .map(|((f, l, id, m), n)| match n {
            0 => (f, l, id, m),
            n => (f, l, id, format!("{m} (and {n} similar errors here)")),
        })
        .collect();
    if !located.is_empty() {
        let (file, line, policy_id, message) = located.remove(0);
        return Err(PolicyError::Validation {
            file,
            line,
            policy_id,
            message,
            more: located
                .into_iter()
                .map(|(f, l, id, m)| format!("{}:{l}: policy \"{id}\": {m}", f.display()))
                .collect(),
        });
    }
    warnings.extend(validation.validation_warnings().map(|w| w.to_string()));

    let digest = digest(&schema_path, &schema_text, &sources);
    let mut policy_ids: Vec<String> = origin.keys().cloned().collect();
    policy_ids.sort();
    let report = ValidationReport {
        schema_file: schema_path,
        policy_files: sources.iter().map(|s| s.path.clone()).collect(),
        policy_ids,
        warnings,
        digest: digest.clone(),
    };
    let types = TypeNames::new().map_err(PolicyError::Internal)?;
    Ok((
        Loaded {
            schema,
            policies,
            reasons,
            digest,
            types,
        },
        report,
    ))
}

/// The line where a policy's text starts in its file; Cedar keeps each policy's original text,
/// but does not expose its location for a policy without an error.
fn policy_line(file_text: &str, policy_text: &str) -> usize {
    file_text
        .find(policy_text)
        .map(|offset| line_at(file_text, offset))
        .unwrap_or(0)
}

/// SHA-256 over every file's name and bytes, in name order (schema first). File names are
/// included so moving a policy between files is a visible change; line endings are normalized
/// so a checkout with CRLF names the same set.
fn digest(schema_path: &Path, schema_text: &str, sources: &[SourceFile]) -> String {
    let mut files: BTreeMap<String, &str> = BTreeMap::new();
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut hasher = Sha256::new();
    hasher.update(b"schema\0");
    hasher.update(name(schema_path).as_bytes());
    hasher.update(b"\0");
    hasher.update(schema_text.replace("\r\n", "\n").as_bytes());
    hasher.update(b"\0");
    for s in sources {
        files.insert(name(&s.path), &s.text);
    }
    for (file, text) in files {
        hasher.update(b"policy\0");
        hasher.update(file.as_bytes());
        hasher.update(b"\0");
        hasher.update(text.replace("\r\n", "\n").as_bytes());
        hasher.update(b"\0");
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests;
