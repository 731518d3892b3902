//! Sign-in and sign-out pages. (The OIDC flow behind the page's provider button is
//! [`super::oidc`].)
//!
//! Dev sign-in exists only when the server runs with dev auth (`--dev-auth`, or the embedded
//! quick start without an issuer): the same mode in which `model-ledger token` mints any
//! identity from the local key, so the form grants nothing the data directory does not
//! already grant. It is labelled as such on the page. The identity it creates has the dev
//! issuer, exactly as a dev token's would.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, http::HeaderValue};
use serde::Deserialize;

use super::session::{self, SIGNIN_COOKIE, SessionPrincipal};
use super::{Chrome, ConsoleError, page};
use crate::api::AppState;

/// Groups the shipped policies name, offered as checkboxes on the dev sign-in form.
pub const KNOWN_GROUPS: &[&str] = &["ml-readers", "ml-ci", "ml-admins", "ml-release-managers"];

/// How long the pre-sign-in CSRF cookie lives: long enough to fill in a form.
const SIGNIN_COOKIE_SECS: i64 = 600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page))
        .route("/signin/dev", post(dev_signin))
        .route("/signout", post(signout))
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    chrome: Chrome,
    dev: bool,
    oidc: bool,
    /// The issuer the OIDC button names.
    oidc_issuer: String,
    /// The page to return to after sign-in (checked again when used), as is and query-encoded.
    next: String,
    next_query: String,
    signin_csrf: String,
    known_groups: &'static [&'static str],
}

#[derive(Deserialize)]
struct SigninParams {
    next: Option<String>,
}

async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<SigninParams>,
) -> Result<Response, ConsoleError> {
    let token = session::random_token();
    let mut response = page(&SigninPage {
        chrome: Chrome::default(),
        dev: state.console.dev_sign_in,
        oidc: state.console.oidc.is_some(),
        oidc_issuer: state
            .console
            .oidc
            .as_ref()
            .map(|c| c.issuer().to_string())
            .unwrap_or_default(),
        next: super::oidc::local_path(params.next.as_deref()),
        next_query: super::segment(&super::oidc::local_path(params.next.as_deref())),
        signin_csrf: token.clone(),
        known_groups: KNOWN_GROUPS,
    })?;
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            SIGNIN_COOKIE,
            &token,
            SIGNIN_COOKIE_SECS,
            session::over_https(&headers),
        ),
    );
    Ok(response)
}

/// A form body's fields, in order (repeated keys, like the `group` checkboxes, repeat).
pub fn form_fields(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key`.
pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn dev_signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ConsoleError> {
    if !state.console.dev_sign_in {
        return Err(ConsoleError::BadInput(
            "dev sign-in is off: this server does not run with dev auth".into(),
        ));
    }
    let fields = form_fields(&body);
    require_signin_token(&headers, field(&fields, "csrf").unwrap_or_default())?;
    let mut groups: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "group")
        .map(|(_, v)| v.clone())
        .collect();
    groups.extend(
        field(&fields, "other_groups")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string),
    );
    groups.sort();
    groups.dedup();
    let principal = SessionPrincipal {
        subject: field(&fields, "subject")
            .unwrap_or_default()
            .trim()
            .to_string(),
        issuer: crate::auth::dev::DEV_ISSUER.to_string(),
        display_name: None,
        groups,
    };
    let cookie = session::start(&state, principal, session::over_https(&headers)).await?;
    let next = super::oidc::local_path(field(&fields, "next"));
    Ok(signed_in_redirect(cookie, &headers, &next))
}

/// The sign-in form's token must equal the `ml_signin` cookie set with the form.
pub fn require_signin_token(headers: &HeaderMap, sent: &str) -> Result<(), ConsoleError> {
    match session::cookie(headers, SIGNIN_COOKIE) {
        Some(expected) if !sent.is_empty() && session::same(sent, expected) => Ok(()),
        _ => Err(ConsoleError::Csrf),
    }
}

/// Redirects to `to` with the new session cookie, and clears the sign-in cookie.
pub fn signed_in_redirect(cookie: HeaderValue, headers: &HeaderMap, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, cookie);
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, "", 0, session::over_https(headers)),
    );
    response
}

#[derive(Deserialize)]
struct SignoutForm {
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignoutForm>,
) -> Result<Response, ConsoleError> {
    if let Some(s) = session::current(&state, &headers).await? {
        s.check_csrf(Some(&form.csrf), &headers)?;
        state.service.end_console_session(&s.id_sha256).await?;
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            session::SESSION_COOKIE,
            "",
            0,
            session::over_https(&headers),
        ),
    );
    Ok(response)
}
