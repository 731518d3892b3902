//! Run pinning: hashing the files of a version registered from an MLflow run, so the version
//! carries a manifest like an uploaded one and `verify`, the Production rule and proxy
//! downloads work on it.
//!
//! The files are read through the upstream's artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts`, for `mlflow-artifacts:` locations, which is what
//! `mlflow server` hands out by default). The listing answers one directory at a time with base
//! names, so the tree is walked breadth first; every file is streamed and hashed chunk by
//! chunk, never held, so memory stays bounded whatever the artifact's size. Locations in a
//! configured artifact store (`s3://`, `gs://`, `az://`, `file://`) are read by
//! [`crate::artifacts`] with the store's own credentials instead.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{TrackingError, Upstream};
use crate::artifacts::manifest;
use crate::artifacts::paths::RelPath;
use crate::domain::events::{ArtifactManifest, ManifestFile, VerificationFailure};

/// The scheme of locations served by the upstream's artifact proxy.
pub const PROXY_SCHEME: &str = "mlflow-artifacts:";
/// Most files one run pin may hold; a bigger tree is refused rather than listed forever.
pub const MAX_RUN_FILES: usize = 10_000;
/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 32;
/// Files hashed at once.
pub(crate) const CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The upstream could not be reached or failed: worth retrying later.
    #[error(transparent)]
    Upstream(#[from] TrackingError),
    #[error("reading the run file(s) at '{0}' failed: {1}")]
    Transfer(String, String),
    #[error("no files under '{0}'")]
    Empty(String),
    #[error("more than {MAX_RUN_FILES} files under '{0}'")]
    TooMany(String),
    #[error("'{0}' is not a run artifact location model-ledger can read: {1}")]
    Unreadable(String, String),
}

/// The path under the proxy's root of an `mlflow-artifacts:` location
/// (`mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts`).
pub fn proxy_path(location: &str) -> Option<Result<String, PinError>> {
    let rest = location.strip_prefix(PROXY_SCHEME)?;
    let rest = match rest.strip_prefix("//") {
        Some(after) => after.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    let path = rest.trim_matches('/').to_string();
    Some(
        super::check_path(&path)
            .map(|_| path)
            .map_err(|e| PinError::Unreadable(location.to_string(), e.to_string())),
    )
}

/// Characters escaped in one path segment of a download URL.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl Upstream {
    /// One directory of the proxy: (base name, is_dir, size).
    async fn list_proxied(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, bool, Option<u64>)>, TrackingError> {
        let answer = self
            .call_json(
                axum::http::Method::GET,
                "/api/2.0/mlflow-artifacts/artifacts",
                &[("path", dir)],
                None,
            )
            .await?
            .unwrap_or_default();
        Ok(answer["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let name = f["path"].as_str()?.rsplit('/').next()?.to_string();
                let size = f["file_size"]
                    .as_u64()
                    .or_else(|| f["file_size"].as_str().and_then(|s| s.parse().ok()));
                Some((name, f["is_dir"].as_bool().unwrap_or(false), size))
            })
            .collect())
    }

    /// Streams one proxied file; `None` when the upstream says it does not exist.
    pub async fn open_proxied(
        &self,
        path: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, std::io::Error>>>, TrackingError> {
        let encoded: Vec<String> = path
            .split('/')
            .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let mut url = self.config.base.clone();
        url.set_path(&format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base_path,
            encoded.join("/")
        ));
        let response = self
            .own_credentials(self.client.get(url))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        if status == axum::http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(TrackingError::BadGateway(
                self.label(),
                format!("artifact '{path}' answered {status}"),
            ));
        }
        Ok(Some(
            response
                .bytes_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        ))
    }

    /// Every file under `root` as (path relative to root, listed size), sorted.
    async fn walk_proxied(&self, root: &str) -> Result<BTreeMap<String, Option<u64>>, PinError> {
        let mut files = BTreeMap::new();
        let mut dirs = vec![(String::new(), 0usize)];
        while let Some((rel, depth)) = dirs.pop() {
            let dir = if rel.is_empty() {
                root.to_string()
            } else {
                format!("{root}/{rel}")
            };
            for (name, is_dir, size) in self.list_proxied(&dir).await? {
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                RelPath::parse(&child)
                    .map_err(|e| PinError::Unreadable(format!("{root}/{child}"), e.to_string()))?;
                if is_dir {
                    if depth + 1 > MAX_DEPTH {
                        return Err(PinError::Unreadable(
                            root.to_string(),
                            format!("nested deeper than {MAX_DEPTH} directories"),
                        ));
                    }
                    dirs.push((child, depth + 1));
                } else {
                    files.insert(child, size);
                    if files.len() > MAX_RUN_FILES {
                        return Err(PinError::TooMany(root.to_string()));
                    }
                }
            }
        }
        Ok(files)
    }

    /// SHA-256 and size of one proxied file, streamed; `None` when it is gone.
    async fn hash_proxied(&self, path: &str) -> Result<Option<(String, u64)>, PinError> {
        let Some(mut stream) = self.open_proxied(path).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| PinError::Transfer(path.to_string(), e.to_string()))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((hex::encode(hasher.finalize()), size)))
    }

    /// Lists and hashes every file under a proxied location: the manifest to pin.
    pub async fn pin_proxied(&self, location: &str) -> Result<ArtifactManifest, PinError> {
        let root = match proxy_path(location) {
            Some(root) => root?,
            None => {
                return Err(PinError::Unreadable(
                    location.to_string(),
                    "not an mlflow-artifacts: location".into(),
                ));
            }
        };
        let listed = self.walk_proxied(&root).await?;
        if listed.is_empty() {
            return Err(PinError::Empty(location.to_string()));
        }
        let hashed: Vec<Result<ManifestFile, PinError>> = futures::stream::iter(listed.into_keys())
            .map(|rel| {
                let full = format!("{root}/{rel}");
                async move {
                    let (sha256, size) = self
                        .hash_proxied(&full)
                        .await?
                        .ok_or_else(|| PinError::Transfer(full.clone(), "vanished".into()))?;
                    Ok(ManifestFile {
                        path: rel,
                        size,
                        sha256,
                    })
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let files = manifest::sorted(hashed.into_iter().collect::<Result<Vec<_>, _>>()?);
        Ok(ArtifactManifest {
            location: location.to_string(),
            digest: manifest::digest(&files),
            files,
        })
    }

    /// Re-reads a pinned proxied location and names every changed, missing and extra file.
    pub async fn check_proxied(
        &self,
        pinned: &ArtifactManifest,
    ) -> Result<Vec<VerificationFailure>, PinError> {
        let root = match proxy_path(&pinned.location) {
            Some(root) => root?,
            None => {
                return Err(PinError::Unreadable(
                    pinned.location.clone(),
                    "not an mlflow-artifacts: location".into(),
                ));
            }
        };
        let mut listed = self.walk_proxied(&root).await?;
        let checks: Vec<Result<Option<VerificationFailure>, PinError>> =
            futures::stream::iter(pinned.files.clone())
                .map(|file| {
                    let present = listed.contains_key(&file.path);
                    let full = format!("{root}/{}", file.path);
                    async move {
                        let fail = |actual: Option<String>, reason: String| VerificationFailure {
                            path: file.path.clone(),
                            expected_sha256: file.sha256.clone(),
                            actual_sha256: actual,
                            reason,
                        };
                        if !present {
                            return Ok(Some(fail(None, "missing".into())));
                        }
                        Ok(match self.hash_proxied(&full).await? {
                            None => Some(fail(None, "missing".into())),
                            Some((sha, _)) if sha != file.sha256 => {
                                Some(fail(Some(sha), "content differs".into()))
                            }
                            Some((sha, size)) if size != file.size => Some(fail(
                                Some(sha),
                                format!("size {size} differs from recorded {}", file.size),
                            )),
                            Some(_) => None,
                        })
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut failures = Vec::new();
        for check in checks {
            if let Some(f) = check? {
                failures.push(f);
            }
        }
        for file in &pinned.files {
            listed.remove(&file.path);
        }
        for extra in listed.into_keys() {
            failures.push(VerificationFailure {
                path: extra,
                expected_sha256: String::new(),
                actual_sha256: None,
                reason: "extra file, not in the pinned manifest".into(),
            });
        }
        failures.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_locations_name_a_safe_path() {
        let path = |l: &str| proxy_path(l).map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(
            path("mlflow-artifacts:/1/abc/artifacts").map(Result::ok),
            Some(Some("1/abc/artifacts".into()))
        );
        assert_eq!(
            path("mlflow-artifacts://h:5000/1/models/m-1/artifacts").map(Result::ok),
            Some(Some("1/models/m-1/artifacts".into()))
        );
        assert!(matches!(path("mlflow-artifacts:/1/../etc"), Some(Err(_))));
        assert!(path("s3://bucket/x").is_none());
    }
}
