//! The web console: server-rendered HTML pages at `/`, served by the same binary and the
//! same [`Service`](crate::service::Service) door as the API under `/api`.
//!
//! A page is an axum handler that (1) finds the signed-in caller from the session cookie
//! ([`session`]), (2) asks the service exactly what an API client would ask (so the same
//! policies decide, and a refusal is the same refusal), and (3) renders an askama template.
//! Templates are compiled into the binary and escape every value they print, so a model
//! description containing `<script>` arrives as text. Forms post to console routes that build
//! the same domain commands the API builds; each carries the session's CSRF token, and a
//! request without the right token changes nothing.
//!
//! Nothing is fetched from another origin: the stylesheet, htmx and the console's own script
//! are embedded ([`assets`]), and every console answer carries a Content-Security-Policy that
//! allows scripts, styles and connections from this origin only (no inline script) and
//! forbids framing. Reading pages need no JavaScript; `console.js` with htmx only adds live refresh.
//!
//! One file per page or resource: [`signin`] (sign-in, sign-out), [`oidc`] (the
//! authorization code flow), [`models`],
//! [`model`], [`version`], [`history`], [`approvals`], [`audit`], and [`live`] (refresh on
//! commit).

pub mod approvals;
pub mod assets;
pub mod audit;
pub mod history;
pub mod live;
pub mod model;
pub mod models;
pub mod oidc;
pub mod session;
pub mod signin;
pub mod version;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::service::ServiceError;

/// The policy every console answer carries. `'self'` only: the embedded assets are all a page
/// loads. No `unsafe-inline` for scripts (or styles), so an injected `<script>` or `onerror=`
/// attribute would not run even if escaping failed somewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, merged into the application router beside the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/models") }))
        .merge(signin::routes())
        .merge(oidc::routes())
        .merge(models::routes())
        .merge(model::routes())
        .merge(version::routes())
        .merge(history::routes())
        .merge(approvals::routes())
        .merge(audit::routes())
        .merge(live::routes())
        .merge(assets::routes())
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every console answer, pages, errors and assets alike.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/console/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_asset {
        // Pages are per caller: never kept by a browser or a proxy.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// How the console signs people in, set by `serve`.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// The dev sign-in form: only when the server runs with dev auth.
    pub dev_sign_in: bool,
    /// Sign-in through the OpenID Provider, when `--console-oidc-issuer` is set.
    pub oidc: Option<std::sync::Arc<oidc::OidcClient>>,
}

/// What the page frame shows about the caller.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    /// The signed-in identity's name, `None` when signed out.
    pub user: Option<String>,
    pub groups: String,
    /// The session's CSRF token, echoed in every form.
    pub csrf: Option<String>,
    /// Whether the policies let the caller read the audit: the Audit link is drawn only then.
    pub may_audit: bool,
}

/// Why a console request failed. Rendered once, as an HTML page with the same stable error
/// codes the API uses.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No (live) session: the browser is sent to sign in, and back to this page after.
    #[error("sign in first")]
    SignIn { back_to: Option<String> },
    /// A form or htmx request without the session's CSRF token.
    #[error("the form's CSRF token is missing or wrong; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadInput(String),
    /// The policies refused: the page says why and names the deciding policies.
    #[error("{reason}")]
    Denied {
        reason: String,
        policy_ids: Vec<String>,
    },
    /// Any other service error, mapped exactly as the API maps it (same status and code; the
    /// message is already safe for callers, internal causes are logged, not echoed).
    #[error("{}", .0.message)]
    Service(ApiError),
    /// An OIDC sign-in that could not be completed.
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
    code: &'a str,
    policy_ids: Vec<String>,
}

impl ConsoleError {
    fn parts(&self) -> (StatusCode, &'static str, String, Vec<String>) {
        match self {
            ConsoleError::SignIn { .. } => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                self.to_string(),
                Vec::new(),
            ),
            ConsoleError::Csrf => (
                StatusCode::FORBIDDEN,
                "CSRF_TOKEN_INVALID",
                self.to_string(),
                Vec::new(),
            ),
            ConsoleError::BadInput(m) => (
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                m.clone(),
                Vec::new(),
            ),
            ConsoleError::Denied { reason, policy_ids } => (
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                reason.clone(),
                policy_ids.clone(),
            ),
            ConsoleError::Service(api) => (api.status, api.code, api.message.clone(), Vec::new()),
            ConsoleError::Oidc(e) => (e.status(), e.code(), e.to_string(), Vec::new()),
            ConsoleError::Template(e) => {
                tracing::error!(error = %e, "console template failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "internal error; see the server log".into(),
                    Vec::new(),
                )
            }
        }
    }
}

impl From<ServiceError> for ConsoleError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Denied(decision) => ConsoleError::Denied {
                reason: decision.reason,
                policy_ids: decision.policy_ids,
            },
            other => ConsoleError::Service(ApiError::from(other)),
        }
    }
}

impl From<crate::domain::names::NameError> for ConsoleError {
    fn from(e: crate::domain::names::NameError) -> Self {
        ConsoleError::BadInput(e.0)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::SignIn { back_to } = &self {
            // Only a page worth returning to; the sign-in checks `next` again anyway.
            return match back_to.as_deref() {
                Some(path)
                    if oidc::local_path(Some(path)) == path && path != oidc::DEFAULT_LANDING =>
                {
                    Redirect::to(&format!("/signin?next={}", segment(path))).into_response()
                }
                _ => Redirect::to("/signin").into_response(),
            };
        }
        let (status, code, message, policy_ids) = self.parts();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            chrome: Chrome::default(),
            title,
            message: &message,
            code,
            policy_ids,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, code).into_response(),
        }
    }
}

/// Renders a template as a 200 page.
pub fn page(template: &impl Template) -> Result<Response, ConsoleError> {
    Ok(Html(template.render()?).into_response())
}

/// Percent-encodes one path segment (model names may hold `/`, spaces or anything printable).
pub fn segment(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A timestamp as the pages show it: UTC, to the second.
pub fn when(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
