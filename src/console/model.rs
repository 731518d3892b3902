//! A model's page: description, tags (gate tags marked as rules), aliases and the versions
//! table, with the forms for what the caller may do to the model (alias, rollback).
//!
//! What is offered is what the policies would allow now ([`Service::may_now`]), asked without
//! recording anything; the form's command is decided again, and recorded, when it is sent.
//! The forms build the API's commands (`SetAlias`, `RollbackStage`) and run them through
//! [`Service::execute`], so a console change is the same event an API call makes.
//!
//! [`Service::may_now`]: crate::service::Service::may_now
//! [`Service::execute`]: crate::service::Service::execute

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::SignedIn;
use super::signin::{field, form_fields};
use super::{Chrome, ConsoleError, page, segment, when};
use crate::api::AppState;
use crate::domain::{Action, AliasName, Command, ModelName, Stage};
use crate::service::{
    EventQuery, Paging, RequestMeta, SortKey, TextMatch, VersionFilter, VersionQuery,
};

/// Versions per page of the versions table.
pub const VERSIONS_PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/models/{name}", get(model_page))
        .route("/models/{name}/aliases", post(set_alias))
        .route("/models/{name}/stages/{stage}/rollback", post(rollback))
}

pub struct TagRow {
    pub key: String,
    pub value: String,
    pub gate: bool,
}

pub struct VersionRow {
    pub version: u64,
    pub href: String,
    pub stage: String,
    pub aliases: Vec<String>,
    pub source: String,
    pub run_id: Option<String>,
    pub verified: bool,
    pub verification: String,
    pub signature: String,
    pub metrics: Vec<(String, String)>,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    chrome: Chrome,
    name: String,
    name_path: String,
    description: String,
    tags: Vec<TagRow>,
    aliases: Vec<(String, u64)>,
    may_alias: bool,
    versions: Vec<VersionRow>,
    next: Option<String>,
    rollback_stages: Vec<&'static str>,
}

#[derive(Deserialize, Default)]
pub struct ModelParams {
    #[serde(default)]
    offset: i64,
}

/// How the verification JSON of a version reads in a table cell.
pub fn verification_words(v: &serde_json::Value) -> (bool, String) {
    match v["status"].as_str().unwrap_or("not_verified") {
        "verified" => (true, "verified".into()),
        "failed" => (false, "verification FAILED".into()),
        _ => (false, "not verified".into()),
    }
}

/// The newest signature status per version, from the model's `SignatureRecorded` events.
pub async fn signature_states(
    state: &AppState,
    caller: &crate::service::Caller,
    name: &ModelName,
    version: Option<u64>,
) -> Result<HashMap<u64, String>, ConsoleError> {
    let events = state
        .service
        .model_events(
            caller,
            name,
            EventQuery {
                event_types: vec!["SignatureRecorded".into()],
                version: version.map(|v| v as i64),
                limit: 10_000,
                ..Default::default()
            },
        )
        .await?;
    let mut states = HashMap::new();
    for e in events {
        if let Some(v) = e.payload["version"].as_u64() {
            let status = e.payload["status"].as_str().unwrap_or("recorded");
            states.insert(v, format!("{status} ({})", when(&e.occurred_at)));
        }
    }
    Ok(states)
}

async fn model_page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(name): Path<String>,
    Query(params): Query<ModelParams>,
) -> Result<Response, ConsoleError> {
    let name = ModelName::parse(name)?;
    let caller = &session.caller;
    let model = state.service.get_model(caller, &name).await?;
    let offset = params.offset.max(0);
    let versions = state
        .service
        .search_versions(
            caller,
            &VersionQuery {
                filters: vec![VersionFilter::Name(TextMatch::Eq(model.name.clone()))],
                order: vec![(SortKey::Version, true)],
                paging: Paging::Offset(offset),
                limit: VERSIONS_PER_PAGE,
            },
        )
        .await?;
    let signatures = signature_states(&state, caller, &name, None).await?;
    let name_path = segment(&model.name);
    let rows = versions
        .items
        .iter()
        .map(|v| {
            let (verified, verification) = verification_words(&v.verification);
            VersionRow {
                version: v.version,
                href: format!("/models/{name_path}/versions/{}", v.version),
                stage: v.stage.clone(),
                aliases: v.aliases.clone(),
                source: v.source.clone(),
                run_id: v.run_id.clone(),
                verified,
                verification,
                signature: signatures
                    .get(&v.version)
                    .cloned()
                    .unwrap_or_else(|| "unsigned".into()),
                metrics: v
                    .metrics
                    .iter()
                    .take(5)
                    .map(|(k, m)| (k.clone(), format!("{m}")))
                    .collect(),
                created_by: v.created_by.subject.clone(),
                created_at: when(&v.created_at),
            }
        })
        .collect();
    let next = versions
        .next
        .as_ref()
        .map(|_| format!("/models/{name_path}?offset={}", offset + VERSIONS_PER_PAGE));
    let may_alias = state
        .service
        .may_now(caller, Action::SetAlias, &name, None, None)
        .await?;
    let mut rollback_stages = Vec::new();
    for stage in [Stage::Production, Stage::Staging] {
        if state
            .service
            .may_now(caller, Action::TransitionStage, &name, None, Some(stage))
            .await?
        {
            rollback_stages.push(stage.as_str());
        }
    }
    page(&ModelPage {
        chrome: session.chrome(),
        name: model.name.clone(),
        name_path,
        description: model.description.clone(),
        tags: model
            .tags
            .iter()
            .map(|(k, v)| TagRow {
                key: k.clone(),
                value: v.clone(),
                gate: k.starts_with(crate::domain::names::GATE_TAG_PREFIX),
            })
            .collect(),
        aliases: model.aliases.iter().map(|(a, v)| (a.clone(), *v)).collect(),
        may_alias,
        versions: rows,
        next,
        rollback_stages,
    })
}

/// Where the browser goes after a change: back to the page it came from.
pub fn back_to(path: String) -> Response {
    Redirect::to(&path).into_response()
}

async fn set_alias(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(name)?;
    let alias = AliasName::parse(field(&fields, "alias").unwrap_or_default().trim())?;
    let version = parse_version(field(&fields, "version").unwrap_or_default())?;
    let command = Command::SetAlias {
        name: name.clone(),
        alias,
        version,
    };
    state
        .service
        .execute(&session.caller, &RequestMeta::default(), command)
        .await?;
    Ok(back_to(format!("/models/{}", segment(name.as_str()))))
}

#[derive(Deserialize)]
struct RollbackPath {
    name: String,
    stage: String,
}

async fn rollback(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path(path): Path<RollbackPath>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(path.name)?;
    let command = Command::RollbackStage {
        name: name.clone(),
        stage: Stage::parse(&path.stage)?,
        comment: field(&fields, "comment")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    };
    state
        .service
        .execute(&session.caller, &RequestMeta::default(), command)
        .await?;
    Ok(back_to(format!("/models/{}", segment(name.as_str()))))
}

/// A version number from a form: a positive integer.
pub fn parse_version(raw: &str) -> Result<u64, ConsoleError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ConsoleError::BadInput(format!("'{raw}' is not a version number")))
}
