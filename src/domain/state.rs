//! A registered model's current state as the fold of its event stream.
//!
//! [`ModelState::apply`] is the only place that interprets events. `decide` reads the state it
//! produces, the store writes it as a snapshot and derives projection rows from it, and `rebuild`
//! replays every stream through it, so live projections and rebuilt ones cannot disagree.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::approval::{Approval, Binding, RequestStatus, TransitionRequest};
use super::events::{Actor, ArtifactManifest, EventPayload, VerificationFailure};
use super::names::{AliasName, ModelName, Stage, TagKey};

/// The latest verification outcome of a version's artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    NotVerified,
    Verified {
        at: DateTime<Utc>,
        digest: String,
    },
    Failed {
        at: DateTime<Utc>,
        failures: Vec<VerificationFailure>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionState {
    pub version: u64,
    pub source: String,
    pub run_id: Option<String>,
    pub description: String,
    pub tags: BTreeMap<TagKey, String>,
    pub metrics: BTreeMap<String, f64>,
    pub signature: Option<serde_json::Value>,
    pub input_example: Option<serde_json::Value>,
    pub artifact: Option<ArtifactManifest>,
    pub verification: Verification,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    pub created_by: Actor,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
    /// Run pinning (issue #16): `Some("pinned")` / `Some("pending")` for versions registered
    /// from a run whose files model-ledger hashes itself; `None` otherwise. Defaulted so
    /// snapshots written before it existed still load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_pin: Option<String>,
    /// Where a run-pinned version's files are read from (the resolved run location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_location: Option<String>,
    /// The latest model signature recorded for the version (issue #16); `None`: unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningState>,
}

/// The latest recorded model signature of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningState {
    /// `verified` or `mismatch`.
    pub status: String,
    pub signer: crate::domain::signing::SignerIdentity,
    pub statement_digest: String,
    pub at: DateTime<Utc>,
}

impl VersionState {
    pub fn artifact_verified(&self) -> bool {
        matches!(self.verification, Verification::Verified { .. })
    }

    /// What a transition request on this version is bound to (see [`Binding`]); the policy
    /// set's digest is filled in by the service once the policies have decided.
    pub fn binding(&self) -> Binding {
        Binding {
            artifact_digest: self
                .artifact
                .as_ref()
                .map(|a| a.digest.clone())
                .unwrap_or_default(),
            verification: match &self.verification {
                Verification::NotVerified => "not_verified".into(),
                Verification::Verified { digest, .. } => format!("verified:{digest}"),
                Verification::Failed { .. } => "failed".into(),
            },
            policy_set_digest: String::new(),
        }
    }
}

/// A comment on a model version (approval workflow, #17). Edited in place; deleted comments
/// leave the state (the log keeps them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionComment {
    pub id: String,
    pub version: u64,
    pub author: Actor,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One model's state after applying its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    pub model_id: Uuid,
    pub name: ModelName,
    pub description: String,
    pub tags: BTreeMap<TagKey, String>,
    pub created_at: DateTime<Utc>,
    pub created_by: Actor,
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
    /// Highest version number ever allocated, so numbers are never reused after a deletion.
    pub last_version: u64,
    pub versions: BTreeMap<u64, VersionState>,
    pub aliases: BTreeMap<AliasName, u64>,
    /// For each stage, the versions that entered it, oldest first: what rollback reads.
    pub stage_entries: BTreeMap<Stage, Vec<u64>>,
    /// The stream version of the last applied event (0 before any).
    pub stream_version: i64,
    /// Approval workflow (#17): every transition request, open or closed, by id. Defaulted so
    /// snapshots written before requests existed still load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, TransitionRequest>,
    /// Live comments on versions, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub comments: BTreeMap<String, VersionComment>,
}

impl ModelState {
    /// Starts a stream's state from its first event. Returns `None` for anything but
    /// `ModelCreated`, which is always first.
    pub fn create(
        model_id: Uuid,
        payload: &EventPayload,
        at: DateTime<Utc>,
        actor: &Actor,
    ) -> Option<Self> {
        match payload {
            EventPayload::ModelCreated {
                name,
                description,
                tags,
            } => Some(ModelState {
                model_id,
                name: name.clone(),
                description: description.clone(),
                tags: tags.clone(),
                created_at: at,
                created_by: actor.clone(),
                updated_at: at,
                deleted: false,
                last_version: 0,
                versions: BTreeMap::new(),
                aliases: BTreeMap::new(),
                stage_entries: BTreeMap::new(),
                stream_version: 1,
                requests: BTreeMap::new(),
                comments: BTreeMap::new(),
            }),
            _ => None,
        }
    }

    /// Folds one more event into the state. Events were validated by `decide` before they were
    /// written, so an event about an unknown version is ignored rather than treated as an error:
    /// replay must never fail on history.
    pub fn apply(&mut self, payload: &EventPayload, at: DateTime<Utc>, actor: &Actor) {
        self.stream_version += 1;
        if payload.touches_model_timestamp() {
            self.updated_at = at;
        }
        match payload {
            EventPayload::ModelCreated { .. } => {}
            EventPayload::ModelRenamed { to, .. } => self.name = to.clone(),
            EventPayload::ModelDescriptionUpdated { description } => {
                self.description = description.clone()
            }
            EventPayload::ModelTagSet { key, value, .. } => {
                self.tags.insert(key.clone(), value.clone());
            }
            EventPayload::ModelTagDeleted { key, .. } => {
                self.tags.remove(key);
            }
            EventPayload::ModelDeleted {} => self.deleted = true,
            EventPayload::VersionCreated {
                version,
                source,
                run_id,
                description,
                tags,
                metrics,
                signature,
                input_example,
                artifact,
                // The evidence's metrics are already in `metrics`; the rest stays in the event,
                // except the pin status, which policies and the pinner read.
                run_evidence,
            } => {
                self.last_version = self.last_version.max(*version);
                self.versions.insert(
                    *version,
                    VersionState {
                        version: *version,
                        source: source.clone(),
                        run_id: run_id.clone(),
                        description: description.clone(),
                        tags: tags.clone(),
                        metrics: metrics.clone(),
                        signature: signature.clone(),
                        input_example: input_example.clone(),
                        artifact: artifact.clone(),
                        verification: Verification::NotVerified,
                        stage: Stage::None,
                        created_at: at,
                        created_by: actor.clone(),
                        updated_at: at,
                        deleted: false,
                        run_pin: run_evidence.as_ref().and_then(|e| e.pin.clone()),
                        run_location: run_evidence
                            .as_ref()
                            .filter(|e| e.pin.is_some())
                            .map(|e| e.resolved_source.clone()),
                        signing: None,
                    },
                );
            }
            EventPayload::VersionDescriptionUpdated {
                version,
                description,
            } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.description = description.clone();
                }
            }
            EventPayload::VersionTagSet {
                version,
                key,
                value,
            } => {
                // MLflow's SQL store leaves a version's timestamp alone when a tag changes.
                if let Some(v) = self.versions.get_mut(version).filter(|v| !v.deleted) {
                    v.tags.insert(key.clone(), value.clone());
                }
            }
            EventPayload::VersionTagDeleted { version, key } => {
                if let Some(v) = self.versions.get_mut(version).filter(|v| !v.deleted) {
                    v.tags.remove(key);
                }
            }
            EventPayload::StageTransitioned { version, to, .. } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.stage = *to;
                    self.stage_entries.entry(*to).or_default().push(*version);
                }
            }
            EventPayload::AliasSet { alias, version, .. } => {
                self.aliases.insert(alias.clone(), *version);
            }
            EventPayload::AliasDeleted { alias, .. } => {
                self.aliases.remove(alias);
            }
            EventPayload::VersionDeleted { version } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.deleted = true;
                }
                self.aliases.retain(|_, v| *v != *version);
            }
            EventPayload::ArtifactVerified {
                version, digest, ..
            } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.verification = Verification::Verified {
                        at,
                        digest: digest.clone(),
                    };
                }
            }
            EventPayload::ArtifactVerificationFailed { version, failures } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.verification = Verification::Failed {
                        at,
                        failures: failures.clone(),
                    };
                }
            }
            // run evidence (issue #16)
            EventPayload::RunArtifactsPinned {
                version, artifact, ..
            } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.artifact = Some(artifact.clone());
                    v.run_pin = Some(crate::domain::events::RunEvidence::PINNED.into());
                }
            }
            EventPayload::MetricsRecorded { version, metrics } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.metrics
                        .extend(metrics.iter().map(|(name, value)| (name.clone(), *value)));
                }
            }
            EventPayload::SignatureRecorded {
                version,
                status,
                signer,
                statement_digest,
                ..
            } => {
                if let Some(v) = self.live_version_mut(*version, at) {
                    v.signing = Some(SigningState {
                        status: status.clone(),
                        signer: signer.clone(),
                        statement_digest: statement_digest.clone(),
                        at,
                    });
                }
            }
            // approval workflow (issue #17)
            EventPayload::TransitionRequested {
                request_id,
                version,
                to_stage,
                comment,
                artifact_digest,
                verification,
                policy_set_digest,
                expires_at,
            } => {
                self.requests.insert(
                    request_id.clone(),
                    TransitionRequest {
                        id: request_id.clone(),
                        version: *version,
                        to_stage: *to_stage,
                        requester: actor.clone(),
                        comment: comment.clone(),
                        binding: Binding {
                            artifact_digest: artifact_digest.clone(),
                            verification: verification.clone(),
                            policy_set_digest: policy_set_digest.clone(),
                        },
                        opened_at: at,
                        expires_at: *expires_at,
                        approvals: Vec::new(),
                        status: RequestStatus::Pending,
                        closed_at: None,
                        closed_by: None,
                        closing_comment: None,
                    },
                );
            }
            EventPayload::RequestApproved {
                request_id,
                comment,
                completes,
                ..
            } => {
                if let Some(r) = self.requests.get_mut(request_id) {
                    r.approvals.push(Approval {
                        by: actor.clone(),
                        at,
                        comment: comment.clone(),
                    });
                    if *completes {
                        r.close(RequestStatus::Approved, actor, at, comment.clone());
                    }
                }
            }
            EventPayload::RequestRejected {
                request_id,
                comment,
                ..
            } => self.close_request(request_id, RequestStatus::Rejected, actor, at, comment),
            EventPayload::RequestCancelled {
                request_id,
                comment,
                ..
            } => self.close_request(request_id, RequestStatus::Cancelled, actor, at, comment),
            EventPayload::RequestExpired { request_id, .. } => {
                self.close_request(request_id, RequestStatus::Expired, actor, at, &None)
            }
            EventPayload::RequestVoided {
                request_id, reason, ..
            } => self.close_request(
                request_id,
                RequestStatus::Voided,
                actor,
                at,
                &Some(reason.clone()),
            ),
            EventPayload::CommentAdded {
                comment_id,
                version,
                comment,
            } => {
                self.comments.insert(
                    comment_id.clone(),
                    VersionComment {
                        id: comment_id.clone(),
                        version: *version,
                        author: actor.clone(),
                        comment: comment.clone(),
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            EventPayload::CommentEdited {
                comment_id,
                comment,
                ..
            } => {
                if let Some(c) = self.comments.get_mut(comment_id) {
                    c.comment = comment.clone();
                    c.updated_at = at;
                }
            }
            EventPayload::CommentDeleted { comment_id, .. } => {
                self.comments.remove(comment_id);
            }
        }
    }

    fn close_request(
        &mut self,
        id: &str,
        status: RequestStatus,
        actor: &Actor,
        at: DateTime<Utc>,
        comment: &Option<String>,
    ) {
        if let Some(r) = self.requests.get_mut(id) {
            r.close(status, actor, at, comment.clone());
        }
    }

    /// The pending request for `(version, stage)`, if one is open.
    pub fn pending_request(&self, version: u64, stage: Stage) -> Option<&TransitionRequest> {
        self.requests.values().find(|r| {
            r.version == version && r.to_stage == stage && r.status == RequestStatus::Pending
        })
    }

    /// Pending requests (including expired ones the sweep has not closed yet).
    pub fn pending_requests(&self) -> impl Iterator<Item = &TransitionRequest> {
        self.requests
            .values()
            .filter(|r| r.status == RequestStatus::Pending)
    }

    fn live_version_mut(&mut self, version: u64, at: DateTime<Utc>) -> Option<&mut VersionState> {
        let v = self.versions.get_mut(&version).filter(|v| !v.deleted)?;
        v.updated_at = at;
        Some(v)
    }

    /// A version that exists and was not deleted.
    pub fn live_version(&self, version: u64) -> Option<&VersionState> {
        self.versions.get(&version).filter(|v| !v.deleted)
    }

    pub fn live_versions(&self) -> impl Iterator<Item = &VersionState> {
        self.versions.values().filter(|v| !v.deleted)
    }

    /// Live versions currently in `stage`, lowest number first.
    pub fn versions_in_stage(&self, stage: Stage) -> Vec<u64> {
        self.live_versions()
            .filter(|v| v.stage == stage)
            .map(|v| v.version)
            .collect()
    }

    /// The version that serves `models:/name/<stage>`: the most recently created version in the
    /// stage, as MLflow's `get_latest_versions` does.
    pub fn latest_in_stage(&self, stage: Stage) -> Option<&VersionState> {
        self.live_versions().filter(|v| v.stage == stage).last()
    }

    /// Aliases pointing at `version`, sorted.
    pub fn aliases_of(&self, version: u64) -> Vec<AliasName> {
        self.aliases
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// Folds one stored event into an optional state: the first event creates it. Shared by the
/// service, `rebuild` and time travel so they cannot interpret history differently.
pub fn fold(
    state: Option<ModelState>,
    model_id: Uuid,
    payload: &EventPayload,
    at: DateTime<Utc>,
    actor: &Actor,
) -> Option<ModelState> {
    match state {
        None => ModelState::create(model_id, payload, at, actor),
        Some(mut s) => {
            s.apply(payload, at, actor);
            Some(s)
        }
    }
}
