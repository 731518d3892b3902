//! Pinning the files of versions registered from an MLflow run (issue #16).
//!
//! At registration the service hashes the run's files through the tracking upstream and puts
//! the manifest in the `VersionCreated` event itself, so a run-based version is as verifiable
//! as an uploaded one. When the upstream or its store cannot be read then, the version is
//! recorded with pin status `pending` (no manifest, so `verify` fails and the Production rule
//! refuses it) and queued here: a background task retries with backoff (1 s doubling to 60 s,
//! for about a day) and records the manifest with a `RunArtifactsPinned` event, written by the
//! system principal through the one command path. The queue lives in memory; after a restart a
//! pending version is pinned by the next `verify` of it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{RequestMeta, Service, ServiceError};
use crate::artifacts::ArtifactError;
use crate::artifacts::stores::StoreRegistry;
use crate::domain::command::Command;
use crate::domain::decide::DomainError;
use crate::domain::events::{Actor, ArtifactManifest, RunEvidence};
use crate::domain::names::ModelName;
use crate::policy::Caller;
use crate::tracking::Upstream;
use crate::tracking::pinning::{self, PinError};

/// Background attempts before a pending pin is left to `verify`.
pub const MAX_BACKGROUND_ATTEMPTS: u32 = 1_500;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One pending pin to try: model, version, where the run's files are, attempt number.
type Job = (String, u64, String, u32);

/// Where pending pins are queued; set once the pinner runs.
#[derive(Default)]
pub struct PinQueue {
    tx: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl PinQueue {
    fn push(&self, job: Job) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(job);
        }
    }
}

/// The principal the server writes its own facts as (see policies/run_evidence.cedar).
fn system_caller() -> Caller {
    Caller {
        actor: Actor::system(),
        groups: Vec::new(),
        service_account: true,
        expires_at: None,
    }
}

/// Whether the run's files at `location` can be read: through the upstream's artifact proxy
/// (`mlflow-artifacts:`) or directly from a configured artifact store that holds the location
/// (`s3://`, `gs://`, `az://`, `file://` with the store's credentials).
fn pinnable(location: &str, stores: Option<&StoreRegistry>) -> bool {
    pinning::proxy_path(location).is_some() || stores.is_some_and(|s| s.resolve(location).is_some())
}

/// Hashes every file under a run's location, wherever [`pinnable`] found it.
async fn pin_location(
    upstream: &Upstream,
    stores: Option<&StoreRegistry>,
    location: &str,
) -> Result<ArtifactManifest, PinError> {
    if pinning::proxy_path(location).is_some() {
        return upstream.pin_proxied(location).await;
    }
    let Some(stores) = stores.filter(|s| s.resolve(location).is_some()) else {
        return Err(PinError::Unreadable(
            location.to_string(),
            "neither the tracking server's artifact proxy nor a configured artifact store".into(),
        ));
    };
    let files = crate::artifacts::hash_location(stores, location, pinning::CONCURRENCY)
        .await
        .map_err(|e| match e {
            ArtifactError::InvalidManifest(_) => PinError::TooMany(location.to_string()),
            ArtifactError::InvalidPath(m) | ArtifactError::OutsideStores(m) => {
                PinError::Unreadable(location.to_string(), m)
            }
            ArtifactError::NotFound(_) => PinError::Empty(location.to_string()),
            other => PinError::Transfer(location.to_string(), other.to_string()),
        })?;
    Ok(ArtifactManifest {
        location: location.to_string(),
        digest: crate::artifacts::manifest::digest(&files),
        files,
    })
}

/// Pins the run's files for a version about to be registered. Returns the manifest when the
/// files were read; marks the evidence `pending` when they could not be read now; refuses
/// locations that can never be pinned. Sources that are neither proxied nor in a configured
/// store are left as they were (no manifest: such a version cannot be verified).
pub(crate) async fn pin_at_registration(
    upstream: &Upstream,
    stores: Option<&StoreRegistry>,
    evidence: &mut RunEvidence,
) -> Result<Option<ArtifactManifest>, DomainError> {
    let location = evidence.resolved_source.clone();
    if evidence.status == RunEvidence::UNAVAILABLE {
        evidence.pin = Some(RunEvidence::PENDING.into());
        evidence.pin_error = evidence.error.clone();
        return Ok(None);
    }
    if !pinnable(&location, stores) {
        return Ok(None);
    }
    match pin_location(upstream, stores, &location).await {
        Ok(manifest) => {
            evidence.pin = Some(RunEvidence::PINNED.into());
            Ok(Some(manifest))
        }
        Err(e @ (PinError::TooMany(_) | PinError::Unreadable(..))) => {
            Err(DomainError::InvalidParameter(e.to_string()))
        }
        Err(e) => {
            tracing::warn!(error = %e, %location, "run artifacts not readable yet; pin pending");
            evidence.pin = Some(RunEvidence::PENDING.into());
            evidence.pin_error = Some(e.to_string());
            Ok(None)
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(MAX_BACKOFF)
}

/// Starts the background pinner for this service.
pub fn spawn_pinner(service: Arc<Service>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    if service.run_pins.tx.set(tx.clone()).is_err() {
        return;
    }
    tokio::spawn(async move {
        while let Some((name, version, location, attempt)) = rx.recv().await {
            let service = service.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(backoff(attempt)).await;
                match service
                    .pin_pending(&name, version, &location, attempt)
                    .await
                {
                    Ok(_) => {}
                    Err(PinAttempt::Retry(e)) if attempt < MAX_BACKGROUND_ATTEMPTS => {
                        tracing::info!(error = %e, %name, version, attempt, "run pin still pending");
                        let _ = tx.send((name, version, location, attempt + 1));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %name, version, "run pin given up in the background; verify retries it");
                    }
                }
            });
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum PinAttempt {
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Final(String),
}

impl Service {
    /// Queues a version whose pin is pending for the background pinner.
    pub(crate) fn queue_pin(&self, name: &str, version: u64, location: &str) {
        self.run_pins
            .push((name.to_string(), version, location.to_string(), 0));
    }

    /// Tries once to pin a pending version and records the manifest. `Ok(false)` when there
    /// was nothing pending.
    pub async fn pin_pending(
        &self,
        name: &str,
        version: u64,
        location: &str,
        attempt: u32,
    ) -> Result<bool, PinAttempt> {
        let Some(upstream) = self.tracking.clone() else {
            return Err(PinAttempt::Final("no --mlflow-upstream configured".into()));
        };
        // A version registered while the upstream was down still names its source
        // (`runs:/…`); it is resolved to the run's location now.
        let mut location = location.to_string();
        if !pinnable(&location, self.run_stores.as_ref()) {
            let found = crate::tracking::evidence::capture(&upstream, &location, None)
                .await
                .map_err(|e| PinAttempt::Final(e.to_string()))?;
            if found.status != RunEvidence::CAPTURED {
                return Err(PinAttempt::Retry(found.error.unwrap_or_default()));
            }
            location = found.resolved_source;
        }
        let manifest = match pin_location(&upstream, self.run_stores.as_ref(), &location).await {
            Ok(m) => m,
            Err(e @ (PinError::TooMany(_) | PinError::Unreadable(..))) => {
                return Err(PinAttempt::Final(e.to_string()));
            }
            Err(e) => return Err(PinAttempt::Retry(e.to_string())),
        };
        let name = ModelName::parse(name).map_err(|e| PinAttempt::Final(e.to_string()))?;
        let command = Command::PinRunArtifacts {
            name,
            version,
            artifact: manifest,
            attempts: attempt + 1,
        };
        match self
            .execute(&system_caller(), &RequestMeta::default(), command)
            .await
        {
            Ok(_) => Ok(true),
            Err(ServiceError::Domain(DomainError::InvalidParameter(_))) => Ok(false),
            Err(e) => Err(PinAttempt::Final(e.to_string())),
        }
    }
}
