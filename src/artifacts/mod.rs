//! Artifact storage and integrity: where a version's files live, how they get there, and how
//! the registry proves they are still exactly the files that were registered.
//!
//! [`ArtifactService`] is the one entry point for the HTTP layer (native and MLflow): upload
//! sessions that end in a `CreateVersion` whose manifest is built from what was actually
//! stored, registration of files already in a configured store, listing and streaming a
//! version's files, repair of a damaged file, and re-hashing for verification. It performs no
//! authorization and writes no events: handlers authorize and record outcomes through
//! [`crate::service::Service`]. Stores come from [`stores`], names from [`paths`], the manifest
//! digest from [`manifest`], streaming and hashing from [`io`]. See docs/artifacts.md.

pub mod client;
pub mod io;
pub mod manifest;
pub mod paths;
pub mod run_files;
pub mod signatures;
pub mod stores;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use uuid::Uuid;

use crate::domain::command::VerificationOutcome;
use crate::domain::events::{Actor, ArtifactManifest, ManifestFile, VerificationFailure};
use crate::domain::state::VersionState;
use crate::store::{FileUploadStart, NewUploadSession, SharedStore, StoreError, UploadCommitStart};
use paths::RelPath;
use stores::StoreRegistry;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("invalid artifact path {0}")]
    InvalidPath(String),
    #[error(
        "location '{0}' lies outside the configured artifact stores; the registry never reads or writes there"
    )]
    OutsideStores(String),
    #[error("no artifact store named '{0}' is configured")]
    UnknownStore(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("the stored files do not match the expected manifest: {}", .0.join("; "))]
    ManifestMismatch(Vec<String>),
    #[error("'{path}': expected sha256 {expected}, received {actual}")]
    DigestMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("file is larger than the configured limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("artifact store configuration: {0}")]
    Config(String),
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Model(#[from] StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl ArtifactError {
    /// Whether the thing asked for does not exist (a missing version, manifest or file, in
    /// our records or in the object store), so callers can answer 404 without knowing the
    /// object store's error shapes.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ArtifactError::NotFound(_) | ArtifactError::Store(object_store::Error::NotFound { .. })
        )
    }
}

/// Limits for transfers and verification.
#[derive(Debug, Clone)]
pub struct ArtifactLimits {
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
    /// Files of one version hashed at once.
    pub verify_concurrency: usize,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        ArtifactLimits {
            max_file_bytes: 64 * 1024 * 1024 * 1024,
            verify_concurrency: 4,
        }
    }
}

/// An upload session's public face.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadInfo {
    pub upload_id: Uuid,
    pub store: String,
    pub location: String,
}

/// A file opened for download.
pub struct OpenedFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

pub struct ArtifactService {
    pub stores: StoreRegistry,
    models: SharedStore,
    pub limits: ArtifactLimits,
    /// The tracking upstream, for versions pinned from a run's `mlflow-artifacts:` location
    /// (issue #16): their files are read back through its artifact proxy.
    pub run_upstream: std::sync::OnceLock<std::sync::Arc<crate::tracking::Upstream>>,
    /// Whose model signatures count (`--trusted-signing-key`, `--trusted-signing-ca`); none
    /// by default, so every signature is refused until trust is configured.
    pub signers: signatures::TrustedSigners,
}

/// Most files one location may hold to be registered or pinned from a store: the manifest's
/// limit, checked after listing so a huge prefix is refused before anything is hashed.
pub const MAX_LOCATION_FILES: usize = 10_000;

/// Lists every file under `location` (which must lie in a configured store) and hashes each,
/// `concurrency` at a time: the sorted manifest files of what is there now. Used to register
/// files already in a store and to pin a run's files where the run's store is configured.
pub async fn hash_location(
    stores: &StoreRegistry,
    location: &str,
    concurrency: usize,
) -> Result<Vec<ManifestFile>, ArtifactError> {
    let resolved = stores
        .resolve(location)
        .ok_or_else(|| ArtifactError::OutsideStores(location.to_string()))?;
    let store = resolved.store.store.clone();
    let listed: Vec<object_store::ObjectMeta> =
        store.list(Some(&resolved.prefix)).try_collect().await?;
    let prefix_parts = resolved.prefix.parts().count();
    if listed.len() > MAX_LOCATION_FILES {
        return Err(ArtifactError::InvalidManifest(format!(
            "'{location}' holds more than {MAX_LOCATION_FILES} files"
        )));
    }
    let mut names = Vec::with_capacity(listed.len());
    for meta in &listed {
        let rel: Vec<String> = meta
            .location
            .parts()
            .skip(prefix_parts)
            .map(|p| p.as_ref().to_string())
            .collect();
        names.push((RelPath::parse(&rel.join("/"))?, meta.location.clone()));
    }
    let hashed: Vec<Result<ManifestFile, ArtifactError>> = futures::stream::iter(names)
        .map(|(rel, key)| {
            let store = store.clone();
            async move {
                let w = io::hash_object(&store, &key).await?.ok_or_else(|| {
                    ArtifactError::NotFound(format!("'{rel}' vanished while hashing"))
                })?;
                Ok(ManifestFile {
                    path: rel.to_string(),
                    size: w.size,
                    sha256: w.sha256,
                })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let files = manifest::sorted(hashed.into_iter().collect::<Result<Vec<_>, _>>()?);
    if files.is_empty() {
        return Err(ArtifactError::NotFound(format!(
            "no files under '{location}'"
        )));
    }
    Ok(files)
}

/// A file marked as streaming in its session's row, until the upload ends. Dropped while still
/// holding the path (the request was cancelled mid-body), it ends the upload as failed in the
/// background, since a destructor cannot wait.
struct StreamingMark {
    models: SharedStore,
    id: Uuid,
    path: Option<String>,
}

impl Drop for StreamingMark {
    fn drop(&mut self) {
        let (Some(path), Ok(runtime)) = (self.path.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (models, id) = (self.models.clone(), self.id);
        runtime.spawn(async move {
            if let Err(e) = models.finish_file_upload(id, &path, None).await {
                tracing::warn!(upload = %id, error = %e, "could not end a cancelled upload");
            }
        });
    }
}

/// Where session uploads go inside a store: per model, per session, never reused.
fn session_prefix(model: &str, id: Uuid) -> Path {
    Path::from_iter(["models", model, &id.to_string()])
}

impl ArtifactService {
    pub fn new(stores: StoreRegistry, models: SharedStore, limits: ArtifactLimits) -> Self {
        ArtifactService {
            stores,
            models,
            limits,
            run_upstream: std::sync::OnceLock::new(),
            signers: signatures::TrustedSigners::default(),
        }
    }

    /// Opens an upload session for a new version of `model` in store `store` (default store
    /// when `None`). The session is a database row (see `store::UploadSessions`), so the
    /// session's later requests may reach any process of the deployment.
    pub async fn start_upload(
        &self,
        model: &str,
        owner: &Actor,
        store: Option<&str>,
    ) -> Result<UploadInfo, ArtifactError> {
        let store = match store {
            Some(name) => self.stores.get(name)?.clone(),
            None => self.stores.default_store()?.clone(),
        };
        let id = Uuid::now_v7();
        let prefix = session_prefix(model, id);
        self.models
            .create_upload_session(&NewUploadSession {
                id,
                model: model.to_string(),
                owner: owner.clone(),
                store: store.name.clone(),
                created_at: chrono::Utc::now(),
            })
            .await?;
        Ok(UploadInfo {
            upload_id: id,
            store: store.name.clone(),
            location: store.location_of(&prefix),
        })
    }

    fn session_error(id: Uuid) -> ArtifactError {
        ArtifactError::NotFound(format!(
            "upload session {id} does not exist (or was committed)"
        ))
    }

    /// Streams one file into a session. `expected_sha256`, when given, must match what arrived;
    /// a mismatching file is deleted again.
    pub async fn upload_file<S, E>(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
        path: &RelPath,
        body: S,
        expected_sha256: Option<&str>,
    ) -> Result<ManifestFile, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let store_name = match self
            .models
            .begin_file_upload(id, model, owner, path.as_str())
            .await?
        {
            FileUploadStart::Started { store } => store,
            FileUploadStart::NoSession => return Err(Self::session_error(id)),
            FileUploadStart::Committing => {
                return Err(ArtifactError::Conflict(format!(
                    "upload session {id} is being committed"
                )));
            }
            FileUploadStart::PathBusy => {
                return Err(ArtifactError::Conflict(format!(
                    "'{path}' is already being uploaded in session {id}"
                )));
            }
        };
        // The path must stop counting as streaming whatever happens, or the session could
        // never be committed: also when the client goes away and this future is dropped.
        let mut mark = StreamingMark {
            models: self.models.clone(),
            id,
            path: Some(path.as_str().to_string()),
        };
        let outcome = self
            .store_session_file(id, model, &store_name, path, body, expected_sha256)
            .await;
        mark.path = None;
        let finished = self
            .models
            .finish_file_upload(id, path.as_str(), outcome.as_ref().ok())
            .await;
        let file = outcome?;
        finished?;
        Ok(file)
    }

    async fn store_session_file<S, E>(
        &self,
        id: Uuid,
        model: &str,
        store_name: &str,
        path: &RelPath,
        body: S,
        expected_sha256: Option<&str>,
    ) -> Result<ManifestFile, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let store = self.stores.get(store_name)?.store.clone();
        let key = path.under(&session_prefix(model, id));
        let written = io::write_object(&store, &key, body, self.limits.max_file_bytes).await?;
        if let Some(expected) = expected_sha256
            && written.sha256 != expected.to_ascii_lowercase()
        {
            let _ = store.delete(&key).await;
            return Err(ArtifactError::DigestMismatch {
                path: path.to_string(),
                expected: expected.to_string(),
                actual: written.sha256,
            });
        }
        Ok(ManifestFile {
            path: path.to_string(),
            size: written.size,
            sha256: written.sha256,
        })
    }

    /// Freezes a session and returns the manifest to record. Call [`Self::finish_commit`]
    /// afterwards with whether the version was created.
    pub async fn begin_commit(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<ArtifactManifest, ArtifactError> {
        let (store_name, files) = match self.models.begin_upload_commit(id, model, owner).await? {
            UploadCommitStart::Frozen { store, files } => (store, files),
            UploadCommitStart::NoSession => return Err(Self::session_error(id)),
            UploadCommitStart::Busy => {
                return Err(ArtifactError::Conflict(format!(
                    "upload session {id} still has uploads in progress or is being committed"
                )));
            }
        };
        if files.is_empty() {
            self.models.finish_upload_commit(id, false).await?;
            return Err(ArtifactError::InvalidManifest(
                "the upload session has no files".into(),
            ));
        }
        let store = match self.stores.get(&store_name) {
            Ok(store) => store,
            Err(e) => {
                self.models.finish_upload_commit(id, false).await?;
                return Err(e);
            }
        };
        let files = manifest::sorted(files);
        Ok(ArtifactManifest {
            location: store.location_of(&session_prefix(model, id)),
            digest: manifest::digest(&files),
            files,
        })
    }

    pub async fn finish_commit(&self, id: Uuid, created: bool) -> Result<(), ArtifactError> {
        Ok(self.models.finish_upload_commit(id, created).await?)
    }

    /// Drops a session and deletes what it uploaded.
    pub async fn abort_upload(
        &self,
        id: Uuid,
        model: &str,
        owner: &Actor,
    ) -> Result<(), ArtifactError> {
        let (store_name, paths) = self
            .models
            .remove_upload_session(id, model, owner)
            .await?
            .ok_or_else(|| Self::session_error(id))?;
        let Ok(store) = self.stores.get(&store_name) else {
            return Ok(());
        };
        let prefix = session_prefix(model, id);
        for path in paths {
            if let Ok(rel) = RelPath::parse(&path) {
                let _ = store.store.delete(&rel.under(&prefix)).await;
            }
        }
        Ok(())
    }

    /// Builds the manifest of files already under `location` (list + hash every file) and
    /// checks it against what the caller expects: a file list, a digest, or both.
    pub async fn register(
        &self,
        location: &str,
        expected_files: Option<Vec<ManifestFile>>,
        expected_digest: Option<&str>,
    ) -> Result<ArtifactManifest, ArtifactError> {
        if expected_files.is_none() && expected_digest.is_none() {
            return Err(ArtifactError::InvalidManifest(
                "registering existing files needs the expected 'files' or 'digest'".into(),
            ));
        }
        if let Some(files) = &expected_files {
            manifest::check_files(files)?;
        }
        if let Some(d) = expected_digest
            && !manifest::is_sha256_hex(d)
        {
            return Err(ArtifactError::InvalidManifest(
                "digest must be 64 lowercase hex digits".into(),
            ));
        }
        let files = hash_location(&self.stores, location, self.limits.verify_concurrency).await?;
        let digest = manifest::digest(&files);
        if let Some(expected) = &expected_files {
            let diffs = manifest::differences(expected, &files);
            if !diffs.is_empty() {
                return Err(ArtifactError::ManifestMismatch(diffs));
            }
        }
        if let Some(expected) = expected_digest
            && expected != digest
        {
            return Err(ArtifactError::ManifestMismatch(vec![format!(
                "expected manifest digest {expected}, the stored files give {digest}"
            )]));
        }
        Ok(ArtifactManifest {
            location: location.to_string(),
            files,
            digest,
        })
    }

    /// A live version of a model, as the event log says now.
    pub async fn version(&self, name: &str, version: u64) -> Result<VersionState, ArtifactError> {
        let state = self.models.load_model(name).await?;
        state
            .as_ref()
            .and_then(|s| s.live_version(version))
            .cloned()
            .ok_or_else(|| {
                ArtifactError::NotFound(format!(
                    "Model Version (name={name}, version={version}) not found"
                ))
            })
    }

    /// The manifest of a version (for listing; also what the MLflow artifact endpoints use).
    pub async fn list(&self, name: &str, version: u64) -> Result<ArtifactManifest, ArtifactError> {
        self.version(name, version).await?.artifact.ok_or_else(|| {
            ArtifactError::NotFound(format!(
                "model version {name}/{version} has no artifact manifest"
            ))
        })
    }

    /// Opens one file of a version for streaming, with its manifest size and SHA-256. Only
    /// files in the manifest, in a configured store, are ever read.
    pub async fn open(
        &self,
        name: &str,
        version: u64,
        path: &str,
    ) -> Result<OpenedFile, ArtifactError> {
        let rel = RelPath::parse(path)?;
        let manifest = self.list(name, version).await?;
        let entry = manifest
            .files
            .iter()
            .find(|f| f.path == rel.as_str())
            .cloned()
            .ok_or_else(|| {
                ArtifactError::NotFound(format!(
                    "'{rel}' is not a file of model version {name}/{version}"
                ))
            })?;
        if let Some(stream) = self.open_run_file(&manifest, &rel).await? {
            return Ok(OpenedFile {
                path: entry.path,
                size: entry.size,
                sha256: entry.sha256,
                stream,
            });
        }
        let resolved = self
            .stores
            .resolve(&manifest.location)
            .ok_or_else(|| ArtifactError::OutsideStores(manifest.location.clone()))?;
        let stream = io::read_object(&resolved.store.store, &rel.under(&resolved.prefix))
            .await?
            .ok_or_else(|| {
                ArtifactError::NotFound(format!(
                    "'{rel}' of model version {name}/{version} is missing from its store"
                ))
            })?;
        Ok(OpenedFile {
            path: entry.path,
            size: entry.size,
            sha256: entry.sha256,
            stream,
        })
    }

    /// Re-uploads one manifest file of a version: the content must hash to the manifest's
    /// SHA-256, so a repair can only restore the registered bytes. It is staged first and
    /// moved into place only on a match, so a wrong upload never damages a good file.
    pub async fn repair<S, E>(
        &self,
        name: &str,
        version: u64,
        path: &RelPath,
        body: S,
    ) -> Result<ManifestFile, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let manifest = self.list(name, version).await?;
        let entry = manifest
            .files
            .iter()
            .find(|f| f.path == path.as_str())
            .cloned()
            .ok_or_else(|| {
                ArtifactError::Conflict(format!(
                    "'{path}' is not in the manifest of {name}/{version}; manifests are immutable, upload a new version instead"
                ))
            })?;
        let resolved = self
            .stores
            .resolve(&manifest.location)
            .ok_or_else(|| ArtifactError::OutsideStores(manifest.location.clone()))?;
        let store = resolved.store.store.clone();
        let staging = Path::from_iter(["_staging", &Uuid::now_v7().to_string()]);
        let written = io::write_object(&store, &staging, body, self.limits.max_file_bytes).await?;
        if written.sha256 != entry.sha256 || written.size != entry.size {
            let _ = store.delete(&staging).await;
            return Err(ArtifactError::DigestMismatch {
                path: path.to_string(),
                expected: entry.sha256,
                actual: written.sha256,
            });
        }
        store
            .rename(&staging, &path.under(&resolved.prefix))
            .await?;
        Ok(entry)
    }

    /// Re-hashes every manifest file of `version` from its store. Missing or different files
    /// are failures; a version with no manifest, or whose location lies outside the stores,
    /// fails with that reason and nothing is fetched. Only store outages are errors.
    pub async fn verify(
        &self,
        version: &VersionState,
    ) -> Result<VerificationOutcome, ArtifactError> {
        let outcome = self.check_files(version).await;
        let label = match &outcome {
            Ok(VerificationOutcome::Verified { .. }) => "verified",
            Ok(VerificationOutcome::Failed { .. }) => "failed",
            Err(_) => "error",
        };
        metrics::counter!("model_ledger_artifact_verifications_total", "outcome" => label)
            .increment(1);
        outcome
    }

    /// [`Self::verify`] without the metric.
    async fn check_files(
        &self,
        version: &VersionState,
    ) -> Result<VerificationOutcome, ArtifactError> {
        let unverifiable = |reason: String, expected: &str| VerificationOutcome::Failed {
            failures: vec![VerificationFailure {
                path: String::new(),
                expected_sha256: expected.to_string(),
                actual_sha256: None,
                reason,
            }],
        };
        let Some(manifest) = &version.artifact else {
            let why = match self.stores.resolve(&version.source) {
                Some(_) => format!(
                    "no artifact manifest was recorded for this version (source '{}')",
                    version.source
                ),
                None => format!(
                    "no artifact manifest was recorded and the source '{}' lies outside the configured artifact stores; it is never fetched",
                    version.source
                ),
            };
            return Ok(unverifiable(why, ""));
        };
        // A manifest that disagrees with its own digest proves nothing, wherever its files are.
        if manifest::digest(&manifest.files) != manifest.digest {
            return Ok(unverifiable(
                "the recorded manifest digest does not match its file list".into(),
                &manifest.digest,
            ));
        }
        if let Some(outcome) = self.check_run_files(manifest).await? {
            return Ok(outcome);
        }
        let Some(resolved) = self.stores.resolve(&manifest.location) else {
            return Ok(unverifiable(
                format!(
                    "location '{}' lies outside the configured artifact stores; it is never fetched",
                    manifest.location
                ),
                &manifest.digest,
            ));
        };
        let store = resolved.store.store.clone();
        let checks: Vec<Result<Option<VerificationFailure>, ArtifactError>> =
            futures::stream::iter(manifest.files.clone())
                .map(|file| {
                    let store = store.clone();
                    let prefix = resolved.prefix.clone();
                    async move {
                        let fail = |actual: Option<String>, reason: String| VerificationFailure {
                            path: file.path.clone(),
                            expected_sha256: file.sha256.clone(),
                            actual_sha256: actual,
                            reason,
                        };
                        let rel = match RelPath::parse(&file.path) {
                            Ok(r) => r,
                            Err(e) => return Ok(Some(fail(None, format!("{e}; never fetched")))),
                        };
                        Ok(match io::hash_object(&store, &rel.under(&prefix)).await? {
                            None => Some(fail(None, "missing".into())),
                            Some(w) if w.sha256 != file.sha256 => {
                                Some(fail(Some(w.sha256), "content differs".into()))
                            }
                            Some(w) if w.size != file.size => Some(fail(
                                Some(w.sha256),
                                format!("size {} differs from recorded {}", w.size, file.size),
                            )),
                            Some(_) => None,
                        })
                    }
                })
                .buffer_unordered(self.limits.verify_concurrency.max(1))
                .collect()
                .await;
        let mut failures = Vec::new();
        for check in checks {
            if let Some(f) = check? {
                failures.push(f);
            }
        }
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(if failures.is_empty() {
            VerificationOutcome::Verified {
                digest: manifest.digest.clone(),
                files: manifest.files.len() as u64,
            }
        } else {
            VerificationOutcome::Failed { failures }
        })
    }
}
