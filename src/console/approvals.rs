//! The approvals inbox: open transition requests the caller may read, with approve, reject
//! and cancel offered exactly when the policies would allow them (the request view's
//! `available_actions`, which the API returns too), and a comment form.
//!
//! Each form is the API's command (`ApproveRequest`, `RejectRequest`, `CancelRequest`,
//! `AddComment`) through `Service::execute`; an approval that completes a request executes
//! the transition in the same append, as it does over the API.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use super::model::{back_to, parse_version};
use super::session::SignedIn;
use super::signin::{field, form_fields};
use super::{Chrome, ConsoleError, page, segment, when};
use crate::api::AppState;
use crate::domain::{Action, Command, ModelName};
use crate::service::RequestMeta;

/// Longest comment accepted from a form (the domain has its own limit too).
pub const MAX_COMMENT_CHARS: usize = 2000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(inbox))
        .route("/approvals/{name}/{id}/{action}", post(act))
        .route("/models/{name}/versions/{version}/comments", post(comment))
}

pub struct RequestRow {
    pub id: String,
    pub name: String,
    pub name_path: String,
    pub version: u64,
    pub current_stage: &'static str,
    pub to_stage: &'static str,
    pub requester: String,
    pub opened_at: String,
    pub expires_at: String,
    pub comment: String,
    pub approvals: Vec<String>,
    pub actions: Vec<&'static str>,
    pub may_comment: bool,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct InboxPage {
    chrome: Chrome,
    requests: Vec<RequestRow>,
}

async fn inbox(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
) -> Result<Response, ConsoleError> {
    let caller = &session.caller;
    let open = state.service.inbox(caller, None).await?;
    let mut requests = Vec::with_capacity(open.len());
    for r in open {
        let name = ModelName::parse(r.name.clone())?;
        let may_comment = state
            .service
            .may_now(caller, Action::Comment, &name, Some(r.version), None)
            .await?;
        requests.push(RequestRow {
            name_path: segment(&r.name),
            id: r.id,
            name: r.name,
            version: r.version,
            current_stage: r.current_stage.as_str(),
            to_stage: r.to_stage.as_str(),
            requester: r.requester.subject,
            opened_at: when(&r.opened_at),
            expires_at: when(&r.expires_at),
            comment: r.comment.unwrap_or_default(),
            approvals: r
                .approvals
                .iter()
                .map(|a| format!("{} at {}", a.by.subject, when(&a.at)))
                .collect(),
            actions: r.available_actions,
            may_comment,
        });
    }
    page(&InboxPage {
        chrome: session.chrome(),
        requests,
    })
}

fn comment_of(fields: &[(String, String)]) -> Result<Option<String>, ConsoleError> {
    let comment = field(fields, "comment").unwrap_or_default().trim();
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ConsoleError::BadInput(format!(
            "a comment is at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok((!comment.is_empty()).then(|| comment.to_string()))
}

async fn act(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path((name, id, action)): Path<(String, String, String)>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(name)?;
    let comment = comment_of(&fields)?;
    let command = match action.as_str() {
        "approve" => Command::ApproveRequest {
            name,
            id,
            comment,
            archive_existing_versions: false,
        },
        "reject" => Command::RejectRequest { name, id, comment },
        "cancel" => Command::CancelRequest { name, id, comment },
        other => {
            return Err(ConsoleError::BadInput(format!(
                "'{other}' is not a request action (approve, reject, cancel)"
            )));
        }
    };
    state
        .service
        .execute(&session.caller, &RequestMeta::default(), command)
        .await?;
    Ok(back_to("/approvals".into()))
}

async fn comment(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
    body: String,
) -> Result<Response, ConsoleError> {
    let fields = form_fields(&body);
    session.check_csrf(field(&fields, "csrf"), &headers)?;
    let name = ModelName::parse(name)?;
    let version = parse_version(&version)?;
    let Some(comment) = comment_of(&fields)? else {
        return Err(ConsoleError::BadInput("the comment is empty".into()));
    };
    state
        .service
        .execute(
            &session.caller,
            &RequestMeta::default(),
            Command::AddComment {
                name,
                version,
                comment,
            },
        )
        .await?;
    Ok(back_to("/approvals".into()))
}
