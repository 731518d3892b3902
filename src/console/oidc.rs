//! Console sign-in through an OpenID Provider: the authorization code flow with PKCE (S256).
//!
//! The browser is sent to the provider's authorization endpoint and comes back to
//! `/signin/oidc/callback` with a one-time `code`; the server trades that code, over a
//! back channel, for an ID token, verifies it, and starts the same database session the dev
//! sign-in starts ([`super::session::start`]). Three values tie the two legs to one browser
//! and one sign-in:
//! - `state` (RFC 6749 §10.12) comes back in the callback's URL and must equal the one this
//!   browser was given, so another site cannot finish a sign-in it did not start (login CSRF);
//! - the PKCE `code_verifier` (RFC 7636) is sent only with the code exchange, and the provider
//!   checks it against the `code_challenge` (its SHA-256) sent with the authorization request,
//!   so a code stolen from the redirect is useless without it;
//! - the `nonce` must reappear inside the signed ID token, so a token from another sign-in
//!   cannot be passed off as this one's.
//!
//! The three are kept in the browser, not in the database: a short-lived (10 minutes)
//! `ml_oidc` cookie, HttpOnly, SameSite=Lax (the provider's redirect back is a top-level GET,
//! which Lax lets through), scoped to `/signin/oidc`, and HMAC-SHA256-signed with a key kept
//! in the data directory, so a cookie this server did not write is refused. The callback
//! clears it, success or failure, so each sign-in is used once.
//!
//! The provider is found by discovery from the issuer URL at start-up; the issuer must also be
//! an `--oidc-issuer`, because the ID token is verified by the API's own verifier (that
//! issuer's JWKS and groups claim; see `auth::id_token`). The client secret, when there is
//! one, is read from a file and never printed; the code, tokens and verifier are never logged
//! or shown. Every failure is an error page with a stable code, never a half-signed-in browser.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ConsoleError;
use super::session::{self, SessionPrincipal};
use crate::api::AppState;
use crate::auth::Authenticator;
use crate::config::ConsoleArgs;

/// The cookie holding one sign-in's state, nonce, verifier and return path.
pub const PENDING_COOKIE: &str = "ml_oidc";
/// How long a browser may spend at the provider (login, consent) before starting again.
pub const PENDING_SECS: i64 = 600;
/// The path the provider sends the browser back to, under `--console-external-url`.
pub const CALLBACK_PATH: &str = "/signin/oidc/callback";
/// Where a sign-in lands when it names no (acceptable) page of its own.
pub const DEFAULT_LANDING: &str = "/models";
/// Largest token endpoint answer read: real ones are a few KiB.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest wait for the token endpoint, connecting included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest query values accepted on the callback; real codes and states are far shorter.
const MAX_CODE_CHARS: usize = 4096;
const MAX_NEXT_CHARS: usize = 1024;
/// The key file, beside the other keys in the data directory.
const KEY_FILE: &str = "console-oidc-cookie.key";

/// Why an OIDC sign-in failed. The messages are shown on the error page: they name what went
/// wrong, never a code, token, verifier or secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("OIDC sign-in is not configured on this server (see --console-oidc-issuer)")]
    NotConfigured,
    #[error("the identity provider did not sign you in: {0}")]
    Provider(String),
    #[error("this sign-in is unknown, expired or was started in another browser; start again")]
    State,
    #[error("redeeming the sign-in at the identity provider failed: {0}")]
    Exchange(String),
    #[error("the identity provider's ID token was refused: {0}")]
    Token(String),
}

impl OidcError {
    /// Stable codes, matched by tests and runbooks: never rename one.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::NotConfigured => "OIDC_NOT_CONFIGURED",
            OidcError::Provider(_) => "OIDC_PROVIDER_ERROR",
            OidcError::State => "OIDC_STATE_INVALID",
            OidcError::Exchange(_) => "OIDC_EXCHANGE_FAILED",
            OidcError::Token(_) => "OIDC_TOKEN_INVALID",
        }
    }

    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            OidcError::NotConfigured => StatusCode::NOT_FOUND,
            OidcError::Provider(_) | OidcError::Token(_) => StatusCode::UNAUTHORIZED,
            OidcError::State => StatusCode::BAD_REQUEST,
            OidcError::Exchange(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// How the console proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// A public client: PKCE alone, `client_id` in the form.
    None,
    /// `client_secret_basic` (RFC 6749 §2.3.1), the default for confidential clients.
    Basic,
    /// `client_secret_post`, when the provider offers only that.
    Post,
}

/// The configured, discovered provider. Built once at start-up.
pub struct OidcClient {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    client_auth: ClientAuth,
    scopes: String,
    redirect_uri: String,
    authorization_endpoint: url::Url,
    token_endpoint: String,
    secure_cookies: bool,
    cookie_key: hmac::Key,
    http: reqwest::Client,
    /// The API's token verifier, which also verifies ID tokens (same issuer keys).
    verifier: Authenticator,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secret, no key: this may end up in a log line.
        f.debug_struct("OidcClient")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_auth", &self.client_auth)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl OidcClient {
    /// The client `--console-oidc-*` describe, discovered from the issuer; `None` when no
    /// console issuer is set. `issuers` are the `--oidc-issuer`s.
    pub async fn from_args(
        args: &ConsoleArgs,
        issuers: &[String],
        data_dir: &Path,
        verifier: Authenticator,
    ) -> Result<Option<Self>, String> {
        let Some(issuer) = args.console_oidc_issuer.clone() else {
            return Ok(None);
        };
        if !issuers.contains(&issuer) {
            return Err(format!(
                "--console-oidc-issuer '{issuer}' is not an --oidc-issuer (configured: {}); \
                 the console's ID tokens are verified with that issuer's keys",
                if issuers.is_empty() {
                    "none".to_string()
                } else {
                    issuers.join(", ")
                }
            ));
        }
        let client_id = args
            .console_oidc_client_id
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or("--console-oidc-issuer needs --console-oidc-client-id")?;
        let external = args
            .console_external_url
            .as_deref()
            .ok_or("--console-oidc-issuer needs --console-external-url (the redirect URI base)")?;
        let external = url::Url::parse(external)
            .map_err(|e| format!("--console-external-url '{external}': {e}"))?;
        if !matches!(external.scheme(), "http" | "https") || external.host().is_none() {
            return Err("--console-external-url must be an http(s) URL with a host".into());
        }
        let scopes = args
            .console_oidc_scopes
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !scopes.split(' ').any(|s| s == "openid") {
            return Err("--console-oidc-scopes must include openid".into());
        }
        let client_secret = match &args.console_oidc_client_secret_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("--console-oidc-client-secret-file {}: {e}", path.display())
                })?;
                let secret = text.lines().next().unwrap_or_default().trim().to_string();
                if secret.is_empty() {
                    return Err(format!(
                        "--console-oidc-client-secret-file {} is empty",
                        path.display()
                    ));
                }
                Some(secret)
            }
        };
        let http = crate::auth::http_client().map_err(|e| e.to_string())?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: Discovery = crate::auth::fetch_json(&http, &url)
            .await
            .map_err(|e| format!("console OIDC discovery: {e}"))?;
        if doc.issuer != issuer {
            return Err(format!(
                "console OIDC discovery: {url} names issuer {:?}, expected {issuer:?}",
                doc.issuer
            ));
        }
        let authorization_endpoint =
            crate::auth::check_url(&doc.authorization_endpoint, "authorization_endpoint")?;
        crate::auth::check_url(&doc.token_endpoint, "token_endpoint")?;
        if let Some(methods) = &doc.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(format!(
                "console OIDC: {issuer} does not offer PKCE with S256 (offers {methods:?})"
            ));
        }
        let offers = |m: &str| {
            doc.token_endpoint_auth_methods_supported
                .as_ref()
                .is_none_or(|all| all.iter().any(|x| x == m))
        };
        let client_auth = match &client_secret {
            None => ClientAuth::None,
            Some(_) if offers("client_secret_basic") => ClientAuth::Basic,
            Some(_) => ClientAuth::Post,
        };
        let base = external.as_str().trim_end_matches('/');
        Ok(Some(Self {
            redirect_uri: format!("{base}{CALLBACK_PATH}"),
            secure_cookies: external.scheme() == "https",
            cookie_key: hmac::Key::new(hmac::HMAC_SHA256, &load_or_create_key(data_dir)?),
            issuer,
            client_id,
            client_secret,
            client_auth,
            scopes,
            authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            http,
            verifier,
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }
}

/// The key the pending-sign-in cookie is signed with: 32 random bytes in the data directory,
/// made on first start. Processes behind one balancer share it (as they share the other keys).
fn load_or_create_key(data_dir: &Path) -> Result<Vec<u8>, String> {
    let path = data_dir.join(KEY_FILE);
    let read = |path: &Path| -> Result<Vec<u8>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        match hex::decode(text.trim()) {
            Ok(key) if key.len() == 32 => Ok(key),
            _ => Err(format!("{}: not 64 hex characters", path.display())),
        }
    };
    if path.is_file() {
        return read(&path);
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(hex::encode(key).as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin/oidc", get(start))
        .route(CALLBACK_PATH, get(callback))
}

/// One sign-in in flight, as the cookie carries it.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    expires_at: i64,
}

/// `next` if it is a page of this console, else the default landing: only an absolute path
/// on this origin (not `//host`, not `/\host`, which browsers read as another host), printable
/// ASCII (it becomes a `Location` header), and not a sign-in page.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/signin")
                && p.len() <= MAX_NEXT_CHARS
                && p.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            p.to_string()
        }
        _ => DEFAULT_LANDING.to_string(),
    }
}

fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OidcClient {
    fn seal(&self, pending: &Pending) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(pending).unwrap_or_default());
        let tag = hmac::sign(&self.cookie_key, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The pending sign-in in `value`, if this server signed it and it has not expired.
    fn open(&self, value: &str) -> Option<Pending> {
        let (body, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant time: a forger learns nothing from how fast a guess is refused.
        hmac::verify(&self.cookie_key, body.as_bytes(), &tag).ok()?;
        let pending: Pending = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (pending.expires_at > chrono::Utc::now().timestamp()).then_some(pending)
    }

    fn cookie(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{PENDING_COOKIE}={value}; Path=/signin/oidc; HttpOnly; SameSite=Lax; \
             Max-Age={max_age}{secure}"
        );
        // The value is base64url and a dot: always a valid header.
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn authorization_url(&self, pending: &Pending) -> String {
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Trades the code for the provider's ID token (the access token is not kept: the console
    /// acts through its own session, not the provider's tokens).
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, OidcError> {
        // The serializer is not `Send`: the body is finished before anything is awaited.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("code_verifier", verifier);
            match (self.client_auth, &self.client_secret) {
                (ClientAuth::Basic, Some(_)) => {}
                (ClientAuth::Post, Some(secret)) => {
                    form.append_pair("client_id", &self.client_id)
                        .append_pair("client_secret", secret);
                }
                _ => {
                    form.append_pair("client_id", &self.client_id);
                }
            }
            form.finish()
        };
        let mut request = self
            .http
            .post(&self.token_endpoint)
            .timeout(EXCHANGE_TIMEOUT)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let (ClientAuth::Basic, Some(secret)) = (self.client_auth, &self.client_secret) {
            // RFC 6749 §2.3.1: both parts form-encoded before they are joined.
            let enc = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            request = request.basic_auth(enc(&self.client_id), Some(enc(secret)));
        }
        let mut response = request.body(body).send().await.map_err(|e| {
            OidcError::Exchange(format!("token endpoint unreachable: {}", e.without_url()))
        })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OidcError::Exchange(format!("reading the answer: {}", e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(OidcError::Exchange(format!(
                    "the answer exceeds {MAX_TOKEN_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct Answer {
            id_token: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer: Option<Answer> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let (error, description) = answer
                .map(|a| (a.error, a.error_description))
                .unwrap_or_default();
            return Err(OidcError::Exchange(format!(
                "HTTP {}: {}",
                status.as_u16(),
                provider_words(error.as_deref(), description.as_deref())
            )));
        }
        answer.and_then(|a| a.id_token).ok_or_else(|| {
            OidcError::Exchange(
                "the answer has no id_token (is openid in --console-oidc-scopes?)".into(),
            )
        })
    }
}

/// A provider's `error` and `error_description`, cut to a sane length and stripped of control
/// characters (the page escapes them as it escapes everything).
fn provider_words(error: Option<&str>, description: Option<&str>) -> String {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(200).collect() };
    match (error, description) {
        (Some(e), Some(d)) => format!("{} ({})", clean(e), clean(d)),
        (Some(e), None) => clean(e),
        _ => "no error given".into(),
    }
}

fn configured(state: &AppState) -> Result<&OidcClient, ConsoleError> {
    state
        .console
        .oidc
        .as_deref()
        .ok_or(ConsoleError::Oidc(OidcError::NotConfigured))
}

#[derive(Deserialize)]
struct StartParams {
    next: Option<String>,
}

/// `GET /signin/oidc?next=`: remembers the sign-in in the cookie, sends the browser to the
/// provider.
async fn start(
    State(state): State<AppState>,
    Query(params): Query<StartParams>,
) -> Result<Response, ConsoleError> {
    let client = configured(&state)?;
    let pending = Pending {
        state: session::random_token(),
        nonce: session::random_token(),
        // 32 random bytes as base64url: 43 characters, the shortest verifier RFC 7636 allows
        // and 256 bits of entropy.
        verifier: session::random_token(),
        next: local_path(params.next.as_deref()),
        expires_at: chrono::Utc::now().timestamp() + PENDING_SECS,
    };
    let mut response = Redirect::to(&client.authorization_url(&pending)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        client.cookie(&client.seal(&pending), PENDING_SECS),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /signin/oidc/callback?code&state` (or `?error=`): checks the state, redeems the code,
/// verifies the ID token and starts the session.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response, ConsoleError> {
    let client = configured(&state)?;
    // Whatever happens next, this sign-in is over: the cookie goes.
    let clear = client.cookie("", 0);
    match finish(&state, client, &headers, params).await {
        Ok(mut response) => {
            response.headers_mut().append(header::SET_COOKIE, clear);
            Ok(response)
        }
        Err(e) => {
            if let ConsoleError::Oidc(oidc) = &e {
                tracing::warn!(code = oidc.code(), error = %oidc, "console OIDC sign-in failed");
            }
            let mut response = e.into_response();
            response.headers_mut().append(header::SET_COOKIE, clear);
            Ok(response)
        }
    }
}

async fn finish(
    state: &AppState,
    client: &OidcClient,
    headers: &HeaderMap,
    params: CallbackParams,
) -> Result<Response, ConsoleError> {
    let pending = session::cookie(headers, PENDING_COOKIE)
        .and_then(|v| client.open(v))
        .ok_or(OidcError::State)?;
    let sent_state = params.state.as_deref().unwrap_or_default();
    if !session::same(sent_state, &pending.state) {
        return Err(OidcError::State.into());
    }
    if let Some(error) = params.error.as_deref() {
        return Err(OidcError::Provider(provider_words(
            Some(error),
            params.error_description.as_deref(),
        ))
        .into());
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= MAX_CODE_CHARS)
        .ok_or_else(|| OidcError::Provider("the callback carries no usable code".into()))?;
    let id_token = client.exchange(code, &pending.verifier).await?;
    let principal = client
        .verifier
        .verify_id_token(&id_token, &client.issuer, &client.client_id, &pending.nonce)
        .await
        .map_err(|e| OidcError::Token(e.to_string()))?;
    let cookie = session::start(
        state,
        SessionPrincipal {
            subject: principal.subject,
            issuer: principal.issuer,
            display_name: principal.display_name,
            groups: principal.groups,
        },
        client.secure_cookies || session::over_https(headers),
    )
    .await?;
    tracing::info!(issuer = %client.issuer, "console OIDC sign-in");
    Ok(super::signin::signed_in_redirect(
        cookie,
        headers,
        &pending.next,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_pages_are_returned_to() {
        for (next, landing) in [
            (
                Some("/models/fraud?tab=versions"),
                "/models/fraud?tab=versions",
            ),
            (Some("/approvals"), "/approvals"),
            (None, DEFAULT_LANDING),
            (Some(""), DEFAULT_LANDING),
            (Some("https://evil.example/"), DEFAULT_LANDING),
            (Some("//evil.example/"), DEFAULT_LANDING),
            (Some("/\\evil.example"), DEFAULT_LANDING),
            (Some("/models\r\nSet-Cookie: x=y"), DEFAULT_LANDING),
            (Some("/models/é"), DEFAULT_LANDING),
            (Some("/signin/oidc"), DEFAULT_LANDING),
            (Some("javascript:alert(1)"), DEFAULT_LANDING),
        ] {
            assert_eq!(local_path(next), landing, "{next:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_NEXT_CHARS));
        assert_eq!(local_path(Some(&long)), DEFAULT_LANDING);
    }

    #[test]
    fn the_challenge_is_the_rfc_7636_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
