//! The HTTP side of the tracking pass-through: every MLflow route model-ledger does not serve
//! itself (runs, experiments, metrics, logged models, run artifacts, the UI's `/ajax-api`, …)
//! lands here, is authenticated and authorized by model-ledger, and is forwarded to
//! `--mlflow-upstream` ([`crate::tracking::Upstream::forward`]).
//!
//! Registry routes are never forwarded: model-ledger is their source of truth, so an unknown
//! `registered-models/…` or `model-versions/…` path is answered here as ENDPOINT_NOT_FOUND.
//! Authorization is by method and path (see [`action_for`] and docs/mlflow.md): reads need the
//! Cedar action `ReadTracking`, everything else `WriteTracking`.

use axum::extract::{OriginalUri, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::mlflow::request::MlflowError;
use crate::domain::Action;
use crate::service::Resource;
use crate::tracking::TrackingError;

/// Path prefixes (outside `/api/2.0/mlflow`, which nests its own fallback) that belong to an
/// MLflow tracking server.
pub const FORWARDED_PREFIXES: &[&str] = &[
    "/api/2.0/mlflow-artifacts/",
    "/api/3.0/mlflow/",
    "/ajax-api/",
    "/get-artifact",
    "/model-versions/get-artifact",
];

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
    FORWARDED_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The Cedar action a tracking call needs. MLflow reads with GET, and with POST for searches
/// and lookups whose parameters are in a JSON body (`runs/search`, `experiments/get-by-name`,
/// `logged-models/search`, `metrics/get-history-bulk-interval`); any other POST, PUT, PATCH or
/// DELETE writes.
pub fn action_for(method: &Method, path: &str) -> Action {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return Action::ReadTracking;
    }
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let read_like = last == "search" || last.starts_with("get") || last.starts_with("list");
    if method == Method::POST && read_like && !path.contains("/mlflow-artifacts/") {
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
    match upstream.forward(method, &uri, &parts.headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(error = %e, path = %uri.path(), "tracking pass-through failed");
            e.into_response()
        }
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
}
