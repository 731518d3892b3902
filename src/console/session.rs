//! Console sessions: who the browser is signed in as, kept server-side.
//!
//! The browser holds only a cookie with 32 random bytes (HttpOnly, SameSite=Lax, Secure when
//! the page came over https); the database holds the SHA-256 of that value with the identity
//! and a CSRF token (see `store::ConsoleSessions`). Rows are in the database, not in this
//! process, because several processes behind a round-robin balancer share one database and
//! the next click may reach another process. A session lasts [`SESSION_LIFETIME`]; sign-out
//! deletes the row, so the cookie is worthless everywhere at once.
//!
//! The identity becomes the same [`Caller`] a bearer token would: the policies cannot tell
//! a console request from an API request by the same person.
//!
//! CSRF: SameSite=Lax already keeps other sites' POSTs from carrying the cookie in current
//! browsers; the per-session token in every form (or the `X-CSRF-Token` header on htmx
//! requests) makes that hold for every browser. Before sign-in there is no session, so the
//! sign-in forms carry a token that must match a short-lived `ml_signin` cookie instead
//! (a login-CSRF guard: another site cannot sign the browser in as someone else).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Chrome, ConsoleError};
use crate::api::AppState;
use crate::domain::Actor;
use crate::service::Caller;
use crate::store::ConsoleSessionRecord;

/// The session cookie.
pub const SESSION_COOKIE: &str = "ml_session";
/// The pre-sign-in CSRF cookie (see the module docs).
pub const SIGNIN_COOKIE: &str = "ml_signin";
/// How long a console sign-in lasts.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(8);
/// Header htmx requests carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Limits on what a sign-in may claim, so a hostile IdP or dev form cannot bloat rows.
pub const MAX_GROUPS: usize = 64;
pub const MAX_NAME_CHARS: usize = 256;

/// The identity a session stands for, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionPrincipal {
    pub subject: String,
    pub issuer: String,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

impl SessionPrincipal {
    /// Checks the claims' sizes and characters: they come from a form or an IdP.
    pub fn validated(self) -> Result<Self, ConsoleError> {
        let name_ok = |s: &str| {
            !s.is_empty() && s.chars().count() <= MAX_NAME_CHARS && !s.chars().any(char::is_control)
        };
        if !name_ok(&self.subject) || !name_ok(&self.issuer) {
            return Err(ConsoleError::BadInput(format!(
                "subject and issuer must be 1 to {MAX_NAME_CHARS} printable characters"
            )));
        }
        if self.groups.len() > MAX_GROUPS || !self.groups.iter().all(|g| name_ok(g)) {
            return Err(ConsoleError::BadInput(format!(
                "at most {MAX_GROUPS} groups of 1 to {MAX_NAME_CHARS} printable characters"
            )));
        }
        Ok(self)
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_sha256: String,
    pub csrf: String,
    pub principal: SessionPrincipal,
    pub caller: Caller,
    /// `ReadAudit` on the registry, asked once per request for the page frame's nav.
    pub may_audit: bool,
}

impl Session {
    pub fn chrome(&self) -> Chrome {
        Chrome {
            user: Some(
                self.principal
                    .display_name
                    .clone()
                    .unwrap_or_else(|| self.principal.subject.clone()),
            ),
            groups: self.principal.groups.join(", "),
            csrf: Some(self.csrf.clone()),
            may_audit: self.may_audit,
        }
    }

    /// Refuses a state-changing request whose token (form field, or the htmx header) is not
    /// this session's.
    pub fn check_csrf(
        &self,
        form_token: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), ConsoleError> {
        let sent = form_token.or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()));
        match sent {
            Some(token) if same(token, &self.csrf) => Ok(()),
            _ => Err(ConsoleError::Csrf),
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes from the OS, base64url: a session id, a CSRF token, a state or a nonce.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over https. The edge layer drops `X-Forwarded-Proto`
/// unless it came from a trusted proxy, so this cannot be forged by a client.
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the console's flags.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    // Names are constants and values base64url, so this is always a valid header.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session for `principal` and returns the `Set-Cookie` that hands it to the browser.
pub async fn start(
    state: &AppState,
    principal: SessionPrincipal,
    secure: bool,
) -> Result<HeaderValue, ConsoleError> {
    let principal = principal.validated()?;
    let id = random_token();
    let now = Utc::now();
    let record = ConsoleSessionRecord {
        id_sha256: sha256_hex(&id),
        csrf_token: random_token(),
        principal: serde_json::to_string(&principal)
            .map_err(|e| ConsoleError::BadInput(e.to_string()))?,
        created_at_us: now.timestamp_micros(),
        expires_at_us: (now + SESSION_LIFETIME).timestamp_micros(),
    };
    state.service.create_console_session(&record).await?;
    Ok(set_cookie(
        SESSION_COOKIE,
        &id,
        SESSION_LIFETIME.num_seconds(),
        secure,
    ))
}

/// The request's live session, if any.
pub async fn current(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, ConsoleError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    // Anything that is not one of our ids cannot match a row; skip the query.
    if id.len() != 43 {
        return Ok(None);
    }
    let id_sha256 = sha256_hex(id);
    let Some(row) = state
        .service
        .console_session(&id_sha256, Utc::now().timestamp_micros())
        .await?
    else {
        return Ok(None);
    };
    let Ok(principal) = serde_json::from_str::<SessionPrincipal>(&row.principal) else {
        return Ok(None);
    };
    let caller = Caller {
        actor: Actor {
            subject: principal.subject.clone(),
            issuer: principal.issuer.clone(),
            display_name: principal.display_name.clone(),
        },
        groups: principal.groups.clone(),
        service_account: false,
        expires_at: Some(row.expires_at_us / 1_000_000),
    };
    // A cached read decision (no model, no change): costs a map lookup on most requests.
    let may_audit = state
        .service
        .may_on_registry(&caller, crate::domain::Action::ReadAudit)
        .await?;
    Ok(Some(Session {
        id_sha256,
        csrf: row.csrf_token,
        principal,
        caller,
        may_audit,
    }))
}

/// Extracts the signed-in session; without one the browser is sent to sign in.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Pages are returned to after sign-in; the live stream and assets are not pages.
        let back_to = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.starts_with("/console/"));
        current(state, &parts.headers)
            .await?
            .map(SignedIn)
            .ok_or(ConsoleError::SignIn { back_to })
    }
}
