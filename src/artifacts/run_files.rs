//! Reading back the files of a version pinned from an MLflow run (issue #16) whose location is
//! the tracking server's artifact proxy (`mlflow-artifacts:`). Such a manifest is not in a
//! configured store, so [`super::ArtifactService::open`] and `verify` come here first: the
//! file is streamed from the upstream (downloads are then checked against the pinned digest
//! by the caller, as for stored files), and verification re-lists the run's tree so that an
//! extra file is named as well as a changed or missing one.

use bytes::Bytes;
use futures::stream::BoxStream;

use super::paths::RelPath;
use super::{ArtifactError, ArtifactService};
use crate::domain::command::VerificationOutcome;
use crate::domain::events::ArtifactManifest;
use crate::tracking::pinning::{self, PinError};

fn upstream_error(e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Io(std::io::Error::other(format!(
        "the MLflow tracking upstream holding this version's run files: {e}"
    )))
}

impl ArtifactService {
    fn proxied_root(&self, manifest: &ArtifactManifest) -> Result<Option<String>, ArtifactError> {
        match pinning::proxy_path(&manifest.location) {
            None => Ok(None),
            Some(Ok(root)) => Ok(Some(root)),
            Some(Err(e)) => Err(ArtifactError::InvalidPath(e.to_string())),
        }
    }

    fn upstream(&self) -> Result<&crate::tracking::Upstream, ArtifactError> {
        self.run_upstream.get().map(|u| u.as_ref()).ok_or_else(|| {
            ArtifactError::Config(
                "this version's files are on an MLflow tracking server; start model-ledger with --mlflow-upstream".into(),
            )
        })
    }

    /// The stream of one file of a run-pinned version, or `None` when the manifest is not one.
    pub(super) async fn open_run_file(
        &self,
        manifest: &ArtifactManifest,
        rel: &RelPath,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, std::io::Error>>>, ArtifactError> {
        let Some(root) = self.proxied_root(manifest)? else {
            return Ok(None);
        };
        let path = format!("{root}/{}", rel.as_str());
        self.upstream()?
            .open_proxied(&path)
            .await
            .map_err(upstream_error)?
            .map(Some)
            .ok_or_else(|| {
                ArtifactError::NotFound(format!(
                    "'{rel}' is missing from the run's artifacts on the MLflow tracking upstream"
                ))
            })
    }

    /// Verification of a run-pinned version, or `None` when the manifest is not one.
    pub(super) async fn check_run_files(
        &self,
        manifest: &ArtifactManifest,
    ) -> Result<Option<VerificationOutcome>, ArtifactError> {
        if self.proxied_root(manifest)?.is_none() {
            return Ok(None);
        }
        let failures = match self.upstream()?.check_proxied(manifest).await {
            Ok(f) => f,
            Err(PinError::Upstream(e)) => return Err(upstream_error(e)),
            Err(e) => return Err(upstream_error(e)),
        };
        Ok(Some(if failures.is_empty() {
            VerificationOutcome::Verified {
                digest: manifest.digest.clone(),
                files: manifest.files.len() as u64,
            }
        } else {
            VerificationOutcome::Failed { failures }
        }))
    }
}
