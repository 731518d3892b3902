//! Run evidence: what the tracking upstream says about a version's training run, read once when
//! the version is registered and recorded in its `VersionCreated` event.
//!
//! A version qualifies when it names a run (`run_id`, or a `runs:/RUN_ID/…` source) or an
//! MLflow 3 logged model (`models:/m-…`). Its source is resolved to where the files are: a
//! `runs:/RUN/NAME` source becomes the run's logged model called NAME when MLflow 3 has one
//! (older scripts register `runs:/RUN/model` without a `model_id`), else the run's artifact
//! location joined with the path. A run the upstream does not know is the caller's mistake and
//! is refused; an upstream that cannot be reached yields evidence marked `unavailable`, so
//! registration keeps working and gates that need the run's metrics fail closed.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{Value, json};

use super::{TrackingError, Upstream};
use crate::domain::events::RunEvidence;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("run '{0}' does not exist on the MLflow tracking upstream")]
    RunNotFound(String),
    #[error("logged model '{0}' does not exist on the MLflow tracking upstream")]
    LoggedModelNotFound(String),
    #[error("{0}")]
    BadReference(String),
}

/// A source that names a run: `runs:/RUN_ID/path` → (`RUN_ID`, `path`).
pub fn parse_runs_uri(source: &str) -> Option<(&str, &str)> {
    let rest = source.strip_prefix("runs:/")?;
    let rest = rest.trim_start_matches('/');
    let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((run, path.trim_matches('/')))
}

/// A source that names an MLflow 3 logged model: `models:/m-…` (one segment; a registry
/// `models:/NAME/VERSION` has two).
pub fn parse_logged_model_uri(source: &str) -> Option<&str> {
    let id = source.strip_prefix("models:/")?;
    (id.starts_with("m-") && !id.contains('/') && !id.contains('@')).then_some(id)
}

/// Whether a version with this source and run id gets evidence.
pub fn wanted(source: &str, run_id: Option<&str>) -> bool {
    run_id.is_some() || parse_runs_uri(source).is_some() || parse_logged_model_uri(source).is_some()
}

fn safe_id(kind: &str, id: &str) -> Result<(), EvidenceError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EvidenceError::BadReference(format!(
            "invalid {kind} '{id}': expected letters, digits, '-' or '_'"
        )))
    }
}

/// Reads the evidence for a version. `Err` refuses the registration; upstream trouble is not
/// an `Err` but evidence with status `unavailable`.
pub async fn capture(
    upstream: &Upstream,
    source: &str,
    run_id: Option<&str>,
) -> Result<RunEvidence, EvidenceError> {
    let from_source = parse_runs_uri(source);
    let logged_model = parse_logged_model_uri(source);
    if let (Some(explicit), Some((in_source, _))) = (run_id, from_source)
        && explicit != in_source
    {
        return Err(EvidenceError::BadReference(format!(
            "run_id '{explicit}' does not match the run '{in_source}' named by source '{source}'"
        )));
    }
    if let Some((run, path)) = from_source {
        safe_id("run id", run)?;
        super::check_path(path).map_err(|e| EvidenceError::BadReference(e.to_string()))?;
    }
    if let Some(id) = logged_model {
        safe_id("logged model id", id)?;
    }
    if let Some(run) = run_id {
        safe_id("run id", run)?;
    }
    match read(upstream, source, run_id, from_source, logged_model).await {
        Ok(evidence) => Ok(evidence),
        Err(Failure::Refused(e)) => Err(e),
        Err(Failure::Upstream(e)) => {
            tracing::warn!(error = %e, "run evidence unavailable; registering without it");
            Ok(RunEvidence {
                run_id: run_id
                    .or(from_source.map(|(r, _)| r))
                    .unwrap_or_default()
                    .to_string(),
                status: RunEvidence::UNAVAILABLE.into(),
                experiment_id: None,
                metrics: BTreeMap::new(),
                params: BTreeMap::new(),
                tags: BTreeMap::new(),
                artifact_uri: None,
                logged_model_id: logged_model.map(str::to_string),
                resolved_source: source.to_string(),
                error: Some(e.to_string()),
                pin: None,
                pin_error: None,
            })
        }
    }
}

enum Failure {
    Refused(EvidenceError),
    Upstream(TrackingError),
}

impl From<TrackingError> for Failure {
    fn from(e: TrackingError) -> Self {
        Failure::Upstream(e)
    }
}

async fn read(
    upstream: &Upstream,
    source: &str,
    run_id: Option<&str>,
    from_source: Option<(&str, &str)>,
    logged_model: Option<&str>,
) -> Result<RunEvidence, Failure> {
    let mut logged: Option<Value> = None;
    if let Some(id) = logged_model {
        let found = upstream
            .call_json(
                Method::GET,
                &format!("/api/2.0/mlflow/logged-models/{id}"),
                &[],
                None,
            )
            .await?
            .ok_or_else(|| Failure::Refused(EvidenceError::LoggedModelNotFound(id.into())))?;
        logged = Some(found["model"].clone());
    }
    let run_id = run_id
        .map(str::to_string)
        .or_else(|| from_source.map(|(r, _)| r.to_string()))
        .or_else(|| {
            logged.as_ref().and_then(|m| {
                m["info"]["source_run_id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
        });
    let mut evidence = RunEvidence {
        run_id: run_id.clone().unwrap_or_default(),
        status: RunEvidence::CAPTURED.into(),
        experiment_id: None,
        metrics: BTreeMap::new(),
        params: BTreeMap::new(),
        tags: BTreeMap::new(),
        artifact_uri: None,
        logged_model_id: logged_model.map(str::to_string),
        resolved_source: source.to_string(),
        error: None,
        pin: None,
        pin_error: None,
    };
    if let Some(run_id) = &run_id {
        let run = upstream
            .call_json(
                Method::GET,
                "/api/2.0/mlflow/runs/get",
                &[("run_id", run_id)],
                None,
            )
            .await?
            .ok_or_else(|| Failure::Refused(EvidenceError::RunNotFound(run_id.clone())))?;
        let run = &run["run"];
        evidence.experiment_id = run["info"]["experiment_id"].as_str().map(str::to_string);
        evidence.artifact_uri = run["info"]["artifact_uri"].as_str().map(str::to_string);
        for m in run["data"]["metrics"].as_array().into_iter().flatten() {
            if let (Some(key), Some(value)) = (m["key"].as_str(), m["value"].as_f64())
                && value.is_finite()
            {
                evidence.metrics.insert(key.to_string(), value);
            }
        }
        evidence.params = pairs(&run["data"]["params"]);
        evidence.tags = pairs(&run["data"]["tags"]);
    }
    if let Some((run, path)) = from_source {
        // MLflow 3 keeps a model logged with `name=` apart from the run's files; MLflow 2 (and
        // an upstream without logged models) has it under the run's artifact location.
        let found = match (
            &evidence.experiment_id,
            path.is_empty() || path.contains('/'),
        ) {
            (Some(experiment), false) => logged_model_of_run(upstream, experiment, run, path).await,
            _ => None,
        };
        if let Some(model) = found {
            evidence.logged_model_id = model["info"]["model_id"].as_str().map(str::to_string);
            logged = Some(model);
        } else if let Some(root) = &evidence.artifact_uri {
            evidence.resolved_source = if path.is_empty() {
                root.clone()
            } else {
                format!("{}/{path}", root.trim_end_matches('/'))
            };
        }
    }
    if let Some(location) = logged
        .as_ref()
        .and_then(|m| m["info"]["artifact_uri"].as_str())
    {
        evidence.resolved_source = location.to_string();
    }
    Ok(evidence)
}

/// The run's logged model called `name`, if the upstream has logged models and one matches.
/// Any failure here falls back to the run's artifact location, which is MLflow 2's layout.
async fn logged_model_of_run(
    upstream: &Upstream,
    experiment: &str,
    run: &str,
    name: &str,
) -> Option<Value> {
    let body = json!({
        "experiment_ids": [experiment],
        "filter": format!("source_run_id = '{run}' AND name = '{}'", name.replace('\'', "")),
        "max_results": 1,
    });
    let found = upstream
        .call_json(
            Method::POST,
            "/api/2.0/mlflow/logged-models/search",
            &[],
            Some(&body),
        )
        .await
        .ok()
        .flatten()?;
    found["models"].as_array()?.first().cloned()
}

fn pairs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["key"].as_str()?.to_string(),
                p["value"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_that_name_runs_and_logged_models() {
        assert_eq!(parse_runs_uri("runs:/abc/model"), Some(("abc", "model")));
        assert_eq!(parse_runs_uri("runs:/abc"), Some(("abc", "")));
        assert_eq!(parse_runs_uri("s3://b/x"), None);
        assert_eq!(parse_logged_model_uri("models:/m-0a1b"), Some("m-0a1b"));
        assert_eq!(parse_logged_model_uri("models:/churn/3"), None);
        assert!(wanted("s3://b/x", Some("r")));
        assert!(!wanted("s3://b/x", None));
        assert!(safe_id("run id", "../x").is_err());
    }
}
