//! The CLI's HTTP client for artifacts: `push` (directory → new version), `pull` (version →
//! directory, every file's digest checked while it is written) and `verify` (ask the server to
//! re-hash). It talks only to the public `/api/v1` routes, so it exercises exactly what any
//! other client would, and it never trusts a file name from the server without
//! [`super::paths::RelPath`] validation.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::manifest;
use super::paths::RelPath;
use crate::domain::events::ManifestFile;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

/// A registry server and the bearer token to use with it.
#[derive(Debug, Clone)]
pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
    /// Show a progress line on stderr.
    pub progress: bool,
}

/// Percent-encodes one path segment for a URL.
fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn enc_path(rel: &str) -> String {
    rel.split('/').map(enc).collect::<Vec<_>>().join("/")
}

async fn json_or_error(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let code = body["error_code"].as_str().unwrap_or("");
    Err(ClientError::Api {
        status: status.as_u16(),
        message: format!("{code} {message}").trim().to_string(),
    })
}

/// One local file to push.
struct LocalFile {
    rel: RelPath,
    abs: PathBuf,
    size: u64,
}

fn walk(dir: &FsPath) -> Result<Vec<LocalFile>, ClientError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let abs = entry.path();
            let meta = std::fs::metadata(&abs)?;
            if meta.is_dir() {
                stack.push(abs);
            } else if meta.is_file() {
                let rel = abs.strip_prefix(dir).map_err(|_| {
                    ClientError::Usage(format!("{} is outside {}", abs.display(), dir.display()))
                })?;
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ClientError::Usage(format!("{} is not UTF-8", abs.display())))?
                    .join("/");
                let rel = RelPath::parse(&rel).map_err(|e| ClientError::Usage(e.to_string()))?;
                out.push(LocalFile {
                    rel,
                    abs,
                    size: meta.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.as_str().as_bytes().cmp(b.rel.as_str().as_bytes()));
    Ok(out)
}

/// A stderr progress line, redrawn at most four times a second.
struct Progress {
    bytes: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(enabled: bool, label: String, total: u64) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        if !enabled {
            return Progress {
                bytes,
                stop: None,
                task: None,
            };
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let counter = bytes.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            loop {
                let done = tokio::select! {
                    _ = &mut rx => true,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => false,
                };
                let sent = counter.load(Ordering::Relaxed);
                let rate = mib(sent) / started.elapsed().as_secs_f64().max(1e-3);
                eprint!(
                    "\r{label}: {:.1}/{:.1} MiB ({:.1} MiB/s)   ",
                    mib(sent),
                    mib(total),
                    rate
                );
                if done {
                    eprintln!();
                    break;
                }
            }
        });
        Progress {
            bytes,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// What `verify` reports.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub name: String,
    pub version: u64,
    pub verified: bool,
    pub body: Value,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Client {
            server: server.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            progress: false,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}/api/v1{}", self.server, path));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Uploads every file under `dir` as a new version of `name` (creating the model if it
    /// does not exist) and returns the version number.
    /// `metrics` are recorded with the version (in the same commit), so a gate can pass at once.
    pub async fn push(
        &self,
        name: &str,
        dir: &FsPath,
        metrics: &std::collections::BTreeMap<String, f64>,
    ) -> Result<u64, ClientError> {
        let files = walk(dir)?;
        if files.is_empty() {
            return Err(ClientError::Usage(format!(
                "{} has no files",
                dir.display()
            )));
        }
        let start = || {
            self.request(
                reqwest::Method::POST,
                &format!("/models/{}/uploads", enc(name)),
            )
            .json(&json!({}))
            .send()
        };
        let session = match json_or_error(start().await?).await {
            Err(ClientError::Api { status: 404, .. }) => {
                let created = self
                    .request(reqwest::Method::POST, "/models")
                    .json(&json!({ "name": name }))
                    .send()
                    .await?;
                match json_or_error(created).await {
                    Ok(_) | Err(ClientError::Api { status: 409, .. }) => {}
                    Err(e) => return Err(e),
                }
                json_or_error(start().await?).await?
            }
            other => other?,
        };
        let id = session["upload_id"]
            .as_str()
            .ok_or_else(|| ClientError::Usage("the server returned no upload id".into()))?
            .to_string();
        let total: u64 = files.iter().map(|f| f.size).sum();
        let progress = Progress::start(self.progress, format!("push {name}"), total);
        let mut uploaded = Vec::with_capacity(files.len());
        for file in &files {
            let hasher = Arc::new(Mutex::new(Sha256::new()));
            let body = file_body(file.abs.clone(), hasher.clone(), progress.bytes.clone());
            let resp = self
                .request(
                    reqwest::Method::PUT,
                    &format!(
                        "/models/{}/uploads/{id}/files/{}",
                        enc(name),
                        enc_path(file.rel.as_str())
                    ),
                )
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await?;
            let stored = json_or_error(resp).await?;
            let local = {
                let h = hasher.lock().unwrap_or_else(|p| p.into_inner()).clone();
                hex::encode(h.finalize())
            };
            if stored["sha256"].as_str() != Some(local.as_str()) {
                return Err(ClientError::Integrity(format!(
                    "'{}': the server stored sha256 {}, the local file is {local}",
                    file.rel, stored["sha256"]
                )));
            }
            uploaded.push(ManifestFile {
                path: file.rel.to_string(),
                size: stored["size"].as_u64().unwrap_or(file.size),
                sha256: local,
            });
        }
        progress.finish().await;
        let resp = self
            .request(
                reqwest::Method::POST,
                &format!("/models/{}/uploads/{id}/commit", enc(name)),
            )
            .json(&json!({
                "expected_digest": manifest::digest(&uploaded),
                "metrics": metrics,
            }))
            .send()
            .await?;
        let version = json_or_error(resp).await?;
        version["version"]
            .as_u64()
            .ok_or_else(|| ClientError::Usage("the server returned no version number".into()))
    }

    /// `models:/NAME/REF` → (name, version).
    pub async fn resolve(&self, uri: &str) -> Result<(String, u64), ClientError> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/resolve?uri={}", enc(uri)))
            .send()
            .await?;
        let v = json_or_error(resp).await?;
        match (v["name"].as_str(), v["version"].as_u64()) {
            (Some(n), Some(ver)) => Ok((n.to_string(), ver)),
            _ => Err(ClientError::Usage(format!(
                "'{uri}' did not resolve to a version"
            ))),
        }
    }

    /// Downloads every file of the version `uri` names into `dir`, checking each file's
    /// SHA-256 against the manifest as it is written. A mismatching file is removed and the
    /// pull fails after trying the others. Returns (name, version, files).
    pub async fn pull(&self, uri: &str, dir: &FsPath) -> Result<(String, u64, usize), ClientError> {
        let (name, version) = self.resolve(uri).await?;
        let listing = self
            .request(
                reqwest::Method::GET,
                &format!("/models/{}/versions/{version}/files", enc(&name)),
            )
            .send()
            .await?;
        let listing = json_or_error(listing).await?;
        let files: Vec<ManifestFile> = serde_json::from_value(listing["files"].clone())
            .map_err(|e| ClientError::Usage(format!("unexpected file list: {e}")))?;
        let total: u64 = files.iter().map(|f| f.size).sum();
        let progress = Progress::start(self.progress, format!("pull {name}/{version}"), total);
        let mut failures = Vec::new();
        for file in &files {
            let rel =
                RelPath::parse(&file.path).map_err(|e| ClientError::Integrity(e.to_string()))?;
            let dest = rel.segments().fold(dir.to_path_buf(), |p, s| p.join(s));
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let partial = dest.with_file_name(format!(
                ".{}.partial",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
            ));
            let resp = self
                .request(
                    reqwest::Method::GET,
                    &format!(
                        "/models/{}/versions/{version}/files/{}",
                        enc(&name),
                        enc_path(rel.as_str())
                    ),
                )
                .send()
                .await?;
            if !resp.status().is_success() {
                match json_or_error(resp).await {
                    Err(e) => failures.push(format!("{rel}: {e}")),
                    Ok(_) => failures.push(format!("{rel}: unexpected answer")),
                }
                continue;
            }
            let header = resp
                .headers()
                .get("x-content-sha256")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut out = tokio::fs::File::create(&partial).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                progress
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            drop(out);
            let actual = hex::encode(hasher.finalize());
            if actual != file.sha256
                || size != file.size
                || header.as_deref().is_some_and(|h| h != file.sha256)
            {
                tokio::fs::remove_file(&partial).await?;
                failures.push(format!(
                    "{rel}: expected sha256 {} ({} bytes), received {actual} ({size} bytes)",
                    file.sha256, file.size
                ));
                continue;
            }
            tokio::fs::rename(&partial, &dest).await?;
        }
        progress.finish().await;
        if !failures.is_empty() {
            return Err(ClientError::Integrity(failures.join("; ")));
        }
        Ok((name, version, files.len()))
    }

    /// Sends a model signature for version `version` of `name`; the server answers what it
    /// recorded (`status` `verified` or `mismatch`) or refuses an untrusted signature.
    pub async fn record_signature(
        &self,
        name: &str,
        version: u64,
        bundle: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let resp = self
            .request(
                reqwest::Method::POST,
                &format!("/models/{}/versions/{version}/signatures", enc(name)),
            )
            .header("content-type", "application/json")
            .body(bundle)
            .send()
            .await?;
        json_or_error(resp).await
    }

    /// Sends one JSON request to the native API (`path` under `/api/v1`) and returns the JSON
    /// answer; an error status becomes [`ClientError::Api`]. Used by the approval commands.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        json_or_error(req.send().await?).await
    }

    /// `path` with each segment percent-encoded, for [`Client::call`].
    pub fn segment(raw: &str) -> String {
        enc(raw)
    }

    /// Asks the server to re-hash the version `uri` names and record the outcome.
    pub async fn verify(&self, uri: &str) -> Result<VerifyReport, ClientError> {
        let (name, version) = self.resolve(uri).await?;
        let resp = self
            .request(
                reqwest::Method::POST,
                &format!("/models/{}/versions/{version}/verify", enc(&name)),
            )
            .send()
            .await?;
        let body = json_or_error(resp).await?;
        Ok(VerifyReport {
            verified: body["verified"].as_bool().unwrap_or(false),
            name,
            version,
            body,
        })
    }
}

/// A file as a request body, hashed and counted as it is read.
fn file_body(path: PathBuf, hasher: Arc<Mutex<Sha256>>, sent: Arc<AtomicU64>) -> reqwest::Body {
    let stream = async_stream::try_stream! {
        let mut file = tokio::fs::File::open(&path).await?;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.lock().unwrap_or_else(|p| p.into_inner()).update(&buf);
            sent.fetch_add(n as u64, Ordering::Relaxed);
            yield bytes::Bytes::from(buf);
        }
    };
    let stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> =
        Box::pin(stream);
    reqwest::Body::wrap_stream(stream)
}
