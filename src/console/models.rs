//! The models page: search by name and tag, one page of rows at a time.
//!
//! One service call answers the whole page (`search_model_summaries`: the models, the newest
//! version in each stage, and each model's newest event with who made it; three queries
//! however many rows), under the same `ReadModel` check as the API's search. Pages hold [`PAGE_SIZE`] rows and continue from the last name
//! shown (keyset paging), so a page costs the same on the first model as on the thousandth.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::session::SignedIn;
use super::{Chrome, ConsoleError, page, segment, when};
use crate::api::AppState;
use crate::service::{ModelFilter, ModelQuery, Paging, SortKey, TextMatch};

/// Rows per page.
pub const PAGE_SIZE: i64 = 50;
/// Longest search term accepted (longer ones are refused, not cut).
pub const MAX_TERM_CHARS: usize = 256;

pub fn routes() -> Router<AppState> {
    Router::new().route("/models", get(models_page))
}

#[derive(Deserialize, Default)]
pub struct ModelsParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    /// The last name of the previous page.
    after: Option<String>,
}

pub struct Row {
    pub name: String,
    pub href: String,
    pub staging: Vec<u64>,
    pub production: Vec<u64>,
    pub aliases: Vec<String>,
    /// When the newest event was recorded, and by whom (its actor's name, else subject).
    pub changed_at: String,
    pub changed_by: String,
    pub change: String,
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    chrome: Chrome,
    q: String,
    tag: String,
    rows: Vec<Row>,
    next: Option<String>,
}

fn term(raw: &str, what: &str) -> Result<String, ConsoleError> {
    let raw = raw.trim();
    if raw.chars().count() > MAX_TERM_CHARS {
        return Err(ConsoleError::BadInput(format!(
            "the {what} search is longer than {MAX_TERM_CHARS} characters"
        )));
    }
    Ok(raw.to_string())
}

async fn models_page(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(params): Query<ModelsParams>,
) -> Result<Response, ConsoleError> {
    let q = term(&params.q, "name")?;
    let tag = term(&params.tag, "tag")?;
    let mut filters = Vec::new();
    if !q.is_empty() {
        filters.push(ModelFilter::Name(TextMatch::Contains(q.clone())));
    }
    if !tag.is_empty() {
        filters.push(match tag.split_once('=') {
            Some((key, value)) => ModelFilter::Tag {
                key: key.trim().to_string(),
                matcher: TextMatch::Eq(value.trim().to_string()),
            },
            // A bare key: any model carrying the tag.
            None => ModelFilter::Tag {
                key: tag.clone(),
                matcher: TextMatch::Like("%".into()),
            },
        });
    }
    let result = state
        .service
        .search_model_summaries(
            &session.caller,
            &ModelQuery {
                filters,
                order: vec![(SortKey::Name, false)],
                paging: match &params.after {
                    Some(after) => Paging::After(term(after, "page")?),
                    None => Paging::Offset(0),
                },
                limit: PAGE_SIZE,
            },
        )
        .await?;
    let next = match (&result.next, result.items.last()) {
        (Some(_), Some(last)) => Some(format!(
            "/models?q={}&tag={}&after={}",
            segment(&q),
            segment(&tag),
            segment(&last.model.model.name)
        )),
        _ => None,
    };
    let rows = result
        .items
        .iter()
        .map(|summary| {
            let m = &summary.model;
            let in_stage = |stage: &str| {
                m.latest
                    .iter()
                    .filter(|v| v.stage == stage)
                    .map(|v| v.version)
                    .collect()
            };
            let (changed_at, changed_by, change) = match &summary.last_change {
                Some(c) => (
                    when(&c.occurred_at),
                    c.actor
                        .display_name
                        .clone()
                        .unwrap_or_else(|| c.actor.subject.clone()),
                    c.event_type.clone(),
                ),
                // The row and its event are written in one transaction; this is only a model
                // deleted between the two reads.
                None => (when(&m.model.updated_at), String::new(), String::new()),
            };
            Row {
                name: m.model.name.clone(),
                href: format!("/models/{}", segment(&m.model.name)),
                staging: in_stage("Staging"),
                production: in_stage("Production"),
                aliases: m
                    .model
                    .aliases
                    .iter()
                    .map(|(a, v)| format!("{a}→v{v}"))
                    .collect(),
                changed_at,
                changed_by,
                change,
            }
        })
        .collect();
    page(&ModelsPage {
        chrome: session.chrome(),
        q,
        tag,
        rows,
        next,
    })
}
