//! A version's page: its files (path, size, SHA-256), verification history, run evidence and
//! metrics, and the "can this reach Production?" panel.
//!
//! The panel asks the policies the question a promotion would ask — `TransitionStage` of this
//! version to Production, by this caller, on the model as it is now — and shows the answer
//! with its reason and the ids of the policies that decided, the same words and ids a denied
//! API call returns. Nothing is recorded by asking; pressing the button asks again for real.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::model::{back_to, signature_states, verification_words};
use super::session::SignedIn;
use super::signin::{field, form_fields};
use super::{Chrome, ConsoleError, page, segment, when};
use crate::api::AppState;
use crate::domain::{Action, Command, ModelName, Stage};
use crate::service::{EventQuery, RequestMeta};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models/{name}/versions/{version}", get(version_page))
        .route("/models/{name}/versions/{version}/stage", post(transition))
        .route("/models/{name}/versions/{version}/requests", post(request))
}

pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

pub struct HistoryRow {
    pub at: String,
    pub kind: String,
    pub actor: String,
}

pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    pub policy_ids: Vec<String>,
}

#[derive(Template)]
#[template(path = "version.html")]
struct VersionPage {
    chrome: Chrome,
    name: String,
    name_path: String,
    version: u64,
    stage: String,
    description: String,
    source: String,
    run_id: Option<String>,
    created_by: String,
    created_at: String,
    production: Decision,
    transitions: Vec<&'static str>,
    may_request: bool,
    files: Vec<FileRow>,
    digest: Option<String>,
    verified: bool,
    verification: String,
    verification_history: Vec<HistoryRow>,
    signature: String,
    metrics: Vec<(String, String)>,
    tags: Vec<(String, String)>,
}

fn version_number(raw: &str) -> Result<u64, ConsoleError> {
    super::model::parse_version(raw)
}

async fn version_page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let name = ModelName::parse(name)?;
    let version = version_number(&version)?;
    let caller = &session.caller;
    let view = state.service.get_version(caller, &name, version).await?;
    let production = state
        .service
        .preview_decision(
            caller,
            Action::TransitionStage,
            &name,
            Some(version),
            None,
            Some(Stage::Production),
        )
        .await?;
    let mut transitions = Vec::new();
    for stage in [Stage::Staging, Stage::Production, Stage::Archived] {
        if stage.as_str() != view.stage
            && state
                .service
                .may_now(
                    caller,
                    Action::TransitionStage,
                    &name,
                    Some(version),
                    Some(stage),
                )
                .await?
        {
            transitions.push(stage.as_str());
        }
    }
    let may_request = state
        .service
        .may_now(
            caller,
            Action::RequestTransition,
            &name,
            Some(version),
            Some(Stage::Production),
        )
        .await?;
    let history = state
        .service
        .model_events(
            caller,
            &name,
            EventQuery {
                version: Some(version as i64),
                event_types: vec![
                    "ArtifactVerified".into(),
                    "ArtifactVerificationFailed".into(),
                    "SignatureRecorded".into(),
                ],
                limit: 200,
                ..Default::default()
            },
        )
        .await?;
    let signature = signature_states(&state, caller, &name, Some(version))
        .await?
        .remove(&version)
        .unwrap_or_else(|| "unsigned".into());
    let files = view
        .artifact
        .as_ref()
        .and_then(|a| a["files"].as_array())
        .map(|files| {
            files
                .iter()
                .map(|f| FileRow {
                    path: f["path"].as_str().unwrap_or_default().to_string(),
                    size: f["size"].as_u64().unwrap_or_default(),
                    sha256: f["sha256"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (verified, verification) = verification_words(&view.verification);
    page(&VersionPage {
        chrome: session.chrome(),
        name: view.name.clone(),
        name_path: segment(&view.name),
        version,
        stage: view.stage.clone(),
        description: view.description.clone(),
        source: view.source.clone(),
        run_id: view.run_id.clone(),
        created_by: view.created_by.subject.clone(),
        created_at: when(&view.created_at),
        production: Decision {
            allowed: production.allowed,
            reason: production.reason,
            policy_ids: production.policy_ids,
        },
        transitions,
        may_request,
        files,
        digest: view
            .artifact
            .as_ref()
            .and_then(|a| a["digest"].as_str())
            .map(str::to_string),
        verified,
        verification,
        verification_history: history
            .iter()
            .map(|e| HistoryRow {
                at: when(&e.occurred_at),
                kind: e.event_type.clone(),
                actor: e.actor.subject.clone(),
            })
            .collect(),
        signature,
        metrics: view
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), format!("{v}")))
            .collect(),
        tags: view
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

async fn transition(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(name)?;
    let version = version_number(&version)?;
    let command = Command::TransitionStage {
        name: name.clone(),
        version,
        stage: Stage::parse(field(&fields, "stage").unwrap_or_default())?,
        comment: field(&fields, "comment")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        archive_existing_versions: field(&fields, "archive_existing") == Some("on"),
    };
    state
        .service
        .execute(&session.caller, &RequestMeta::default(), command)
        .await?;
    Ok(back_to(format!(
        "/models/{}/versions/{version}",
        segment(name.as_str())
    )))
}

async fn request(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(name)?;
    let version = version_number(&version)?;
    let command = Command::RequestTransition {
        name: name.clone(),
        version,
        stage: Stage::parse(field(&fields, "stage").unwrap_or_default())?,
        comment: field(&fields, "comment")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    };
    state
        .service
        .execute(&session.caller, &RequestMeta::default(), command)
        .await?;
    Ok(back_to(format!(
        "/models/{}/versions/{version}",
        segment(name.as_str())
    )))
}
