//! The HTTP side of the tracking pass-through: every MLflow route model-ledger does not serve
//! itself (runs, experiments, metrics, logged models, run artifacts, the UI's `/ajax-api`, …)
//! lands here, is authenticated and authorized by model-ledger, and is forwarded to
//! `--mlflow-upstream` ([`crate::tracking::Upstream::forward`]).
//!
//! Registry routes are never forwarded: model-ledger is their source of truth, so an unknown
//! `registered-models/…` or `model-versions/…` path is answered here as ENDPOINT_NOT_FOUND.
//! Authorization is by method and full route (see [`action_for`] and docs/mlflow.md): the
//! routes in [`READ_ROUTES`] need the Cedar action `ReadTracking`; every other call, including
//! routes model-ledger does not know (a newer MLflow's), needs `WriteTracking`. An unknown route
//! is thus forwarded only for callers who may write, the safe side of not knowing.
//!
//! A body without a declared length is received in full (in memory up to `--max-body-bytes`,
//! then in a temporary file) before anything is forwarded, so an oversized chunked body is
//! refused with 413 instead of reaching the upstream truncated.

use axum::extract::{OriginalUri, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::AppState;
use super::mlflow::request::MlflowError;
use crate::domain::Action;
use crate::service::Resource;
use crate::tracking::TrackingError;

/// Path prefixes (outside `/api/2.0/mlflow`, which nests its own fallback) that belong to an
/// MLflow tracking server. Each ends with `/`, so a prefix only matches whole segments.
pub const FORWARDED_PREFIXES: &[&str] = &[
    "/api/2.0/mlflow-artifacts/",
    "/api/3.0/mlflow/",
    "/ajax-api/",
];

/// Single routes of the MLflow UI outside the API prefixes, matched exactly.
pub const FORWARDED_ROUTES: &[&str] = &["/get-artifact", "/model-versions/get-artifact"];

/// The API prefixes a tracking route may sit under; [`READ_ROUTES`] are written without them.
const API_PREFIXES: &[&str] = &[
    "/api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/api/3.0/mlflow/",
    "/ajax-api/3.0/mlflow/",
];

/// How a read route is matched against a request.
#[derive(Debug, Clone, Copy)]
enum Reads {
    /// GET or HEAD only.
    Get,
    /// GET, HEAD or POST (searches and lookups whose parameters MLflow sends in a JSON body).
    GetOrPost,
}

/// The MLflow tracking routes that only read (MLflow 2.x and 3.x `server/handlers.py`),
/// below an API prefix or, starting with `/`, as the whole path. `*` is exactly one path
/// segment; a trailing `**` is one or more. Anything not listed is a write.
const READ_ROUTES: &[(&str, Reads)] = &[
    ("experiments/get", Reads::Get),
    ("experiments/get-by-name", Reads::GetOrPost),
    ("experiments/search", Reads::GetOrPost),
    ("experiments/list", Reads::Get),
    ("runs/get", Reads::Get),
    ("runs/search", Reads::GetOrPost),
    ("metrics/get-history", Reads::Get),
    ("metrics/get-history-bulk", Reads::Get),
    ("metrics/get-history-bulk-interval", Reads::GetOrPost),
    ("artifacts/list", Reads::Get),
    ("logged-models/search", Reads::GetOrPost),
    ("logged-models/*", Reads::Get),
    ("logged-models/*/artifacts/directories", Reads::Get),
    ("logged-models/*/artifacts/files", Reads::Get),
    ("traces", Reads::Get),
    ("traces/search", Reads::GetOrPost),
    ("traces/get-online-trace-details", Reads::Get),
    ("traces/*", Reads::Get),
    ("traces/*/info", Reads::Get),
    ("traces/*/credentials-for-data-download", Reads::Get),
    ("datasets/search", Reads::GetOrPost),
    ("server-info", Reads::Get),
    ("/api/2.0/mlflow-artifacts/artifacts", Reads::Get),
    ("/api/2.0/mlflow-artifacts/artifacts/**", Reads::Get),
    ("/ajax-api/2.0/mlflow-artifacts/artifacts", Reads::Get),
    ("/ajax-api/2.0/mlflow-artifacts/artifacts/**", Reads::Get),
    ("/get-artifact", Reads::Get),
    ("/model-versions/get-artifact", Reads::Get),
];

/// Whether `path` (segments, no leading `/`) matches `pattern`.
fn route_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            // `**` needs at least one (non-empty) segment.
            (Some("**"), Some(seg)) => return !seg.is_empty(),
            (Some("*"), Some(seg)) if !seg.is_empty() => {}
            (Some(w), Some(seg)) if w == seg => {}
            _ => return false,
        }
    }
}

/// First segments under `…/mlflow/` that are the registry's, answered by model-ledger only.
const REGISTRY_SEGMENTS: &[&str] = &["registered-models", "model-versions", "webhooks"];

/// Where model-ledger's own stored version files live below the artifact proxy root
/// ([`super::mlflow::wire::artifact_path`]); those are served by model-ledger, not forwarded.
const OWN_ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts/models/";

/// Whether a request (full path and query) is one the pass-through handles.
pub fn is_forwarded(path: &str, query: Option<&str>) -> bool {
    if path.starts_with(OWN_ARTIFACTS) {
        return false;
    }
    // The artifact listing names its directory in `?path=`; model-ledger's own are its own.
    if path.trim_end_matches('/') == OWN_ARTIFACTS.trim_end_matches("/models/")
        && url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .any(|(k, v)| k == "path" && v.trim_start_matches('/').starts_with("models/"))
    {
        return false;
    }
    for api in [
        "/api/2.0/mlflow/",
        "/ajax-api/2.0/mlflow/",
        "/api/3.0/mlflow/",
    ] {
        if let Some(rest) = path.strip_prefix(api) {
            let first = rest.split('/').next().unwrap_or("");
            return !REGISTRY_SEGMENTS.contains(&first);
        }
    }
    FORWARDED_ROUTES.contains(&path) || FORWARDED_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The Cedar action a tracking call needs: `ReadTracking` for a route in [`READ_ROUTES`] with
/// a method it reads with, `WriteTracking` for everything else. The whole route decides, not
/// its last segment, so `runs/delete/get` is a write (and is answered by the upstream as
/// whatever it is).
pub fn action_for(method: &Method, path: &str) -> Action {
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    if !get && !post {
        return Action::WriteTracking;
    }
    // A trailing slash is the same route to MLflow's router; an empty segment inside is not.
    let path = path.strip_suffix('/').unwrap_or(path);
    let below_api = API_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix));
    let is_read = READ_ROUTES.iter().any(|(pattern, reads)| {
        let method_fits = match reads {
            Reads::Get => get,
            Reads::GetOrPost => true,
        };
        let route_fits = match pattern.strip_prefix('/') {
            Some(whole) => path
                .strip_prefix('/')
                .is_some_and(|p| route_matches(whole, p)),
            None => below_api.is_some_and(|rest| route_matches(pattern, rest)),
        };
        method_fits && route_fits
    });
    if is_read {
        Action::ReadTracking
    } else {
        Action::WriteTracking
    }
}

fn full_uri(request: &Request) -> axum::http::Uri {
    request
        .extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| request.uri().clone())
}

/// Authenticates, authorizes and forwards one tracking request.
pub async fn forward(State(state): State<AppState>, request: Request) -> Response {
    let uri = full_uri(&request);
    let method = request.method().clone();
    let Some(upstream) = state.tracking.clone() else {
        return TrackingError::NotConfigured(format!("{method} {}", uri.path())).into_response();
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match state.auth.authenticate(authorization).await {
        Ok(caller) => caller,
        Err(e) => return MlflowError(e).into_response(),
    };
    let action = action_for(&method, uri.path());
    if let Err(e) = state
        .service
        .check(&caller, action, Resource::Registry)
        .await
    {
        return MlflowError::from(e).into_response();
    }
    let (parts, body) = request.into_parts();
    let body = match bounded_body(&parts.headers, body, &upstream, &state).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match upstream.forward(method, &uri, &parts.headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, path = %uri.path(), "tracking pass-through failed");
            e.into_response()
        }
    }
}

/// The body to forward. A declared length is checked by [`crate::tracking::Upstream::forward`]
/// and streamed (uploads of gigabytes are not held anywhere). A body without one (chunked)
/// is received in full first, so an oversized one is refused with 413 before the upstream
/// sees a byte of it, rather than cut short in the middle of the upstream request: up to
/// `--max-body-bytes` in memory, beyond that in a temporary file, never past the
/// pass-through limit.
async fn bounded_body(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    upstream: &crate::tracking::Upstream,
    state: &AppState,
) -> Result<axum::body::Body, TrackingError> {
    use axum::body::HttpBody;
    if headers.contains_key(header::CONTENT_LENGTH) || body.size_hint().exact() == Some(0) {
        return Ok(body);
    }
    let limit = upstream.max_body_bytes();
    let in_memory = (state.config.max_body_bytes as u64).min(limit);
    let mut stream = body.into_data_stream();
    let mut buffered = bytes::BytesMut::new();
    let mut spool: Option<Spool> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::api::error::is_body_timeout(&e) {
                TrackingError::BodyTimeout
            } else {
                TrackingError::BadRequestBody(e.to_string())
            }
        })?;
        total += chunk.len() as u64;
        if total > limit {
            // Dropping the spool removes its file.
            return Err(TrackingError::TooLarge(limit));
        }
        match &mut spool {
            Some(file) => file.write(&chunk).await?,
            None if total > in_memory => {
                let mut file = Spool::create().await?;
                file.write(&buffered).await?;
                file.write(&chunk).await?;
                buffered = bytes::BytesMut::new();
                spool = Some(file);
            }
            None => buffered.extend_from_slice(&chunk),
        }
    }
    match spool {
        None => Ok(axum::body::Body::from(buffered.freeze())),
        Some(file) => file.into_body().await,
    }
}

/// A temporary file holding a chunked body while it is received; removed when dropped, or
/// (on Unix) as soon as it is reopened for forwarding, so nothing outlives the request.
struct Spool {
    path: std::path::PathBuf,
    file: tokio::fs::File,
}

fn spool_error(e: std::io::Error) -> TrackingError {
    TrackingError::Spool(e.to_string())
}

impl Spool {
    async fn create() -> Result<Self, TrackingError> {
        let path = std::env::temp_dir().join(format!(
            "model-ledger-upload-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(spool_error)?;
        Ok(Spool { path, file })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), TrackingError> {
        use tokio::io::AsyncWriteExt;
        self.file.write_all(bytes).await.map_err(spool_error)
    }

    async fn into_body(mut self) -> Result<axum::body::Body, TrackingError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await.map_err(spool_error)?;
        let reader = tokio::fs::File::open(&self.path)
            .await
            .map_err(spool_error)?;
        // `self` drops here and removes the path; the open reader keeps the data on Unix.
        drop(self);
        let stream = futures::stream::unfold(reader, |mut reader| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), reader))
                }
                Err(e) => Some((Err(e), reader)),
            }
        });
        Ok(axum::body::Body::from_stream(stream))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_and_own_artifacts_are_never_forwarded() {
        let fwd = |p: &str| is_forwarded(p, None);
        assert!(fwd("/api/2.0/mlflow/runs/get"));
        assert!(fwd("/ajax-api/2.0/mlflow/experiments/search"));
        assert!(fwd(
            "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/MLmodel"
        ));
        assert!(fwd("/get-artifact"));
        assert!(fwd("/model-versions/get-artifact"));
        assert!(!fwd("/get-artifactXYZ"));
        assert!(!fwd("/get-artifact/x"));
        assert!(!fwd("/model-versions/get-artifact-extra"));
        assert!(!fwd("/api/2.0/mlflow/registered-models/whatever"));
        assert!(!fwd("/api/2.0/mlflow/model-versions/unknown"));
        assert!(!fwd(
            "/api/2.0/mlflow-artifacts/artifacts/models/0190/3/MLmodel"
        ));
        assert!(!fwd("/api/v1/models"));
        let list = "/api/2.0/mlflow-artifacts/artifacts";
        assert!(is_forwarded(list, Some("path=1%2Fabc%2Fartifacts")));
        assert!(!is_forwarded(list, Some("path=models%2F0190%2F3")));
    }

    #[test]
    fn reads_and_writes_by_method_and_path() {
        let p = "/api/2.0/mlflow/runs/search";
        assert_eq!(action_for(&Method::POST, p), "ReadTracking");
        assert_eq!(
            action_for(&Method::GET, "/api/2.0/mlflow/runs/get"),
            "ReadTracking"
        );
        assert_eq!(
            action_for(&Method::POST, "/api/2.0/mlflow/experiments/get-by-name"),
            "ReadTracking"
        );
        assert_eq!(
            action_for(&Method::POST, "/api/2.0/mlflow/runs/create"),
            "WriteTracking"
        );
        assert_eq!(
            action_for(&Method::POST, "/api/2.0/mlflow/runs/log-batch"),
            "WriteTracking"
        );
        assert_eq!(
            action_for(&Method::PUT, "/api/2.0/mlflow-artifacts/artifacts/1/r/x"),
            "WriteTracking"
        );
        assert_eq!(
            action_for(&Method::DELETE, "/api/2.0/mlflow/logged-models/m-1"),
            "WriteTracking"
        );
        assert_eq!(
            action_for(&Method::PATCH, "/api/2.0/mlflow/logged-models/m-1/tags"),
            "WriteTracking"
        );
    }

    #[test]
    fn the_whole_route_decides_not_its_last_segment() {
        let write = |m: &Method, p: &str| action_for(m, p) == "WriteTracking";
        for path in [
            "/api/2.0/mlflow/runs/delete/get",
            "/api/2.0/mlflow/runs/delete/search",
            "/api/2.0/mlflow/experiments/delete/list",
            "/api/2.0/mlflow/runs/get/extra",
            "/api/2.0/mlflow/runs//get",
            "/api/2.0/mlflow/some/future/get",
            "/api/2.0/mlflow-artifacts/mpu/create/1/r/x",
        ] {
            assert!(write(&Method::POST, path), "{path}");
        }
        // Unknown routes are writes whatever the method; GET-only reads are not POST reads.
        assert!(write(&Method::GET, "/api/2.0/mlflow/some/future/route"));
        assert!(write(&Method::POST, "/api/2.0/mlflow/runs/get"));
        assert!(write(&Method::POST, "/api/2.0/mlflow/logged-models/m-1"));
        assert!(write(&Method::OPTIONS, "/api/2.0/mlflow/runs/get"));
        assert!(write(&Method::GET, "/api/2.0/mlflow/logged-models"));
        assert!(write(&Method::GET, "/get-artifactXYZ"));
        let read = |m: &Method, p: &str| action_for(m, p) == "ReadTracking";
        assert!(read(&Method::GET, "/api/2.0/mlflow/runs/get/"));
        assert!(read(&Method::HEAD, "/api/2.0/mlflow/logged-models/m-1"));
        assert!(read(
            &Method::GET,
            "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
        ));
        assert!(read(&Method::POST, "/api/3.0/mlflow/traces/search"));
        assert!(read(
            &Method::GET,
            "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/m"
        ));
        assert!(read(&Method::GET, "/model-versions/get-artifact"));
        assert!(!read(
            &Method::PUT,
            "/api/2.0/mlflow-artifacts/artifacts/1/r/x"
        ));
    }
}
