//! The MLflow tracking server behind model-ledger (`--mlflow-upstream`): the one client that
//! talks to it, for both the pass-through of tracking routes ([`Upstream::forward`]) and the
//! run evidence read when a version is registered ([`evidence`]).
//!
//! Forwarding only ever reaches the configured upstream: the target is the upstream's base URL
//! with the request's path appended as text (never URL-joined, so `//host` or an absolute
//! request target cannot change the host), after the path has been refused if it hides a
//! traversal (`..`, encoded slashes, backslashes, control characters) at any decoding depth.
//! Redirects are not followed, hop-by-hop headers are dropped, and bodies stream both ways.

pub mod evidence;
pub mod pinning;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::{Stream, StreamExt};
use url::Url;

/// How model-ledger reaches its upstream and what it lets through.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub base: Url,
    pub token: Option<String>,
    pub basic: Option<(String, String)>,
    /// Pass the caller's own `Authorization` on forwarded calls instead of the upstream's
    /// credentials (for upstreams that authorize per user).
    pub forward_auth: bool,
    pub connect_timeout: Duration,
    /// The longest wait for the upstream's next bytes; a transfer that keeps moving is never
    /// cut, so large artifacts are not bounded by a total deadline.
    pub read_timeout: Duration,
    pub max_body_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error(
        "this MLflow tracking endpoint ({0}) is forwarded to an MLflow tracking server, and none is \
         configured: start model-ledger with --mlflow-upstream URL (MODEL_LEDGER_MLFLOW_UPSTREAM)"
    )]
    NotConfigured(String),
    #[error("refused request path: {0}")]
    UnsafePath(String),
    #[error("the MLflow tracking upstream {0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("the MLflow tracking upstream {0} did not answer in time")]
    Timeout(String),
    #[error("the MLflow tracking upstream {0} failed: {1}")]
    BadGateway(String, String),
    #[error("request body larger than the pass-through limit of {0} bytes")]
    TooLarge(u64),
    #[error("the request body could not be held for forwarding: {0}")]
    Spool(String),
    #[error("the request body was not received in time (--body-read-timeout)")]
    BodyTimeout,
    #[error("the request body could not be read: {0}")]
    BadRequestBody(String),
    #[error("invalid upstream setting: {0}")]
    Config(String),
}

impl TrackingError {
    /// Status and MLflow error code. Upstream trouble is 502/503 so clients see a gateway
    /// problem, not a fault of their own request or of model-ledger.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            TrackingError::NotConfigured(_) => (StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND"),
            TrackingError::UnsafePath(_) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
            TrackingError::Unreachable(..) => {
                (StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE")
            }
            TrackingError::Timeout(_) | TrackingError::BadGateway(..) => {
                (StatusCode::BAD_GATEWAY, "BAD_GATEWAY")
            }
            TrackingError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE"),
            TrackingError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT"),
            TrackingError::BadRequestBody(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE")
            }
            TrackingError::Config(_) | TrackingError::Spool(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
            }
        }
    }

    pub fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error_code": code, "message": self.to_string() });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus `Host`,
/// which must name the upstream rather than model-ledger.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || n.starts_with("proxy-") || listed.iter().any(|l| l == n)
}

/// Names a `Connection` header lists are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Percent-decodes until the text stops changing, so a check sees what any later decoding
/// layer would see (the double-encoding lesson of CVE-2023-6730 and CVE-2024-1560).
fn fully_decoded(raw: &str) -> String {
    let mut current = raw.to_string();
    for _ in 0..8 {
        let next = percent_decode(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses a path (or a `path` parameter) that could step out of where it points.
pub fn check_path(raw: &str) -> Result<(), TrackingError> {
    let lower = raw.to_ascii_lowercase();
    // An encoded separator would become a new segment only after our check.
    for encoded in ["%2f", "%5c", "%00"] {
        if lower.contains(encoded) {
            return Err(TrackingError::UnsafePath(format!(
                "encoded separator {encoded} in {raw}"
            )));
        }
    }
    let decoded = fully_decoded(raw);
    if decoded.contains('\\') {
        return Err(TrackingError::UnsafePath(format!("backslash in {raw}")));
    }
    if decoded.chars().any(|c| c.is_control()) {
        return Err(TrackingError::UnsafePath(format!(
            "control character in {raw}"
        )));
    }
    if decoded.contains(';') {
        // `;/../` is read as a path parameter by some routers and as a segment by others.
        return Err(TrackingError::UnsafePath(format!("';' in {raw}")));
    }
    if decoded.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(TrackingError::UnsafePath(format!(
            "'..' or '.' segment in {raw}"
        )));
    }
    Ok(())
}

/// Query parameters that MLflow treats as artifact paths; checked like the request path.
const PATH_PARAMS: &[&str] = &["path", "artifact_path", "root_uri"];

/// The upstream client.
#[derive(Debug, Clone)]
pub struct Upstream {
    config: UpstreamConfig,
    client: reqwest::Client,
    /// Base path without its trailing slash, prepended to every forwarded path.
    base_path: String,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, TrackingError> {
        match config.base.scheme() {
            "http" | "https" => {}
            other => {
                return Err(TrackingError::Config(format!(
                    "--mlflow-upstream must be an http(s) URL, not {other}:"
                )));
            }
        }
        if config.base.host_str().is_none()
            || config.base.query().is_some()
            || config.base.fragment().is_some()
        {
            return Err(TrackingError::Config(
                "--mlflow-upstream must be scheme://host[:port][/path] without query or fragment"
                    .into(),
            ));
        }
        if config.token.is_some() && config.basic.is_some() {
            return Err(TrackingError::Config(
                "--mlflow-upstream-token and --mlflow-upstream-username are exclusive".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .tcp_nodelay(true)
            // A redirect could point anywhere; the client gets it as it is instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TrackingError::Config(e.to_string()))?;
        let base_path = config.base.path().trim_end_matches('/').to_string();
        Ok(Upstream {
            config,
            client,
            base_path,
        })
    }

    pub fn base(&self) -> &Url {
        &self.config.base
    }

    /// The largest request body forwarded (`--mlflow-upstream-max-body-bytes`).
    pub fn max_body_bytes(&self) -> u64 {
        self.config.max_body_bytes
    }

    fn label(&self) -> String {
        let b = &self.config.base;
        match b.port() {
            Some(p) => format!("{}://{}:{p}", b.scheme(), b.host_str().unwrap_or("")),
            None => format!("{}://{}", b.scheme(), b.host_str().unwrap_or("")),
        }
    }

    /// The upstream URL for a request target, or a refusal.
    pub fn target(&self, uri: &Uri) -> Result<Url, TrackingError> {
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(TrackingError::UnsafePath(
                "absolute-form request targets are not forwarded".into(),
            ));
        }
        let path = uri.path();
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(TrackingError::UnsafePath(format!("path {path}")));
        }
        check_path(path)?;
        if let Some(query) = uri.query() {
            for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if PATH_PARAMS.contains(&key.as_ref()) {
                    check_path(&value)?;
                }
            }
        }
        let mut text = format!(
            "{}://{}{}",
            self.config.base.scheme(),
            self.authority(),
            self.base_path
        );
        text.push_str(path);
        if let Some(query) = uri.query() {
            text.push('?');
            text.push_str(query);
        }
        let url = Url::parse(&text).map_err(|e| TrackingError::UnsafePath(e.to_string()))?;
        // Defence in depth: whatever the parser made of it must still be the upstream.
        if url.scheme() != self.config.base.scheme()
            || url.host_str() != self.config.base.host_str()
            || url.port_or_known_default() != self.config.base.port_or_known_default()
            || !url.path().starts_with(&self.base_path)
        {
            return Err(TrackingError::UnsafePath(format!(
                "{path} does not stay on the upstream"
            )));
        }
        Ok(url)
    }

    fn authority(&self) -> String {
        let b = &self.config.base;
        let host = b.host_str().unwrap_or("");
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        match b.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    fn own_credentials(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.config.token, &self.config.basic) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some((user, password))) => request.basic_auth(user, Some(password)),
            (None, None) => request,
        }
    }

    fn classify(&self, e: reqwest::Error) -> TrackingError {
        if e.is_timeout() {
            TrackingError::Timeout(self.label())
        } else if e.is_connect() {
            TrackingError::Unreachable(self.label(), root_cause(&e))
        } else {
            TrackingError::BadGateway(self.label(), root_cause(&e))
        }
    }

    /// Forwards one request and streams the answer back, status and headers preserved.
    pub async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, TrackingError> {
        let target = self.target(uri)?;
        let limit = self.config.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(TrackingError::TooLarge(limit));
        }
        let listed = connection_listed(headers);
        let mut out = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            if is_hop_by_hop(name, &listed) {
                continue;
            }
            // The caller's credentials are for model-ledger; they reach the upstream only when
            // the operator asked for it.
            if !self.config.forward_auth
                && (name == header::AUTHORIZATION || name == header::COOKIE)
            {
                continue;
            }
            out.append(name.clone(), value.clone());
        }
        let mut request = self.client.request(method, target).headers(out);
        if !self.config.forward_auth {
            request = self.own_credentials(request);
        }
        // A bodiless GET must stay bodiless: some servers refuse a chunked GET.
        if axum::body::HttpBody::size_hint(&body).exact() != Some(0) {
            request = request.body(reqwest::Body::wrap_stream(limited(
                body.into_data_stream(),
                limit,
            )));
        }
        let upstream = request.send().await.map_err(|e| self.classify(e))?;
        let status = upstream.status();
        let listed = connection_listed(upstream.headers());
        let mut response_headers = HeaderMap::with_capacity(upstream.headers().len());
        for (name, value) in upstream.headers() {
            if !is_hop_by_hop(name, &listed) {
                response_headers.append(name.clone(), value.clone());
            }
        }
        let stream = upstream.bytes_stream();
        let mut response = Response::new(Body::from_stream(stream));
        *response.status_mut() = status;
        *response.headers_mut() = response_headers;
        Ok(response)
    }

    /// A JSON GET or POST of model-ledger's own (run evidence), with its own credentials and a
    /// total deadline. `Ok(None)` is the upstream's 404.
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, TrackingError> {
        let mut url = self.config.base.clone();
        url.set_path(&format!("{}{path}", self.base_path));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .client
            .request(method, url)
            .timeout(self.config.read_timeout + self.config.connect_timeout);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self
            .own_credentials(request)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response.text().await.map_err(|e| self.classify(e))?;
        if !status.is_success() {
            return Err(TrackingError::BadGateway(
                self.label(),
                format!("{path} answered {status}: {}", truncate(&text, 300)),
            ));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            TrackingError::BadGateway(self.label(), format!("{path} answered non-JSON: {e}"))
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The innermost cause: reqwest's own message ("error sending request") says nothing useful.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Passes a body through, failing it once more than `limit` bytes went by, so an upload with
/// no declared length cannot exceed the limit either.
fn limited<S, E>(
    stream: S,
    limit: u64,
) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut seen: u64 = 0;
    stream.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(std::io::Error::other(format!(
                "request body exceeds {limit} bytes"
            )));
        }
        Ok(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream::new(UpstreamConfig {
            base: Url::parse(base).unwrap(),
            token: None,
            basic: None,
            forward_auth: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_body_bytes: 10,
        })
        .unwrap()
    }

    fn target(u: &Upstream, raw: &str) -> Result<String, TrackingError> {
        u.target(&raw.parse::<Uri>().unwrap())
            .map(|u| u.to_string())
    }

    #[test]
    fn targets_stay_on_the_upstream() {
        let u = upstream("http://mlflow.internal:5000/prefix/");
        assert_eq!(
            target(&u, "/api/2.0/mlflow/runs/get?run_id=abc").unwrap(),
            "http://mlflow.internal:5000/prefix/api/2.0/mlflow/runs/get?run_id=abc"
        );
        for bad in [
            "/api/2.0/mlflow-artifacts/artifacts/../../etc/passwd",
            "/api/2.0/mlflow-artifacts/artifacts/%2e%2e/x",
            "/api/2.0/mlflow-artifacts/artifacts/%252e%252e/x",
            "/api/2.0/mlflow-artifacts/artifacts/a%2fb",
            "/api/2.0/mlflow-artifacts/artifacts/a%5cb",
            "/api/2.0/mlflow-artifacts/artifacts/a;/x",
            "//evil.example/api",
            "http://evil.example/api/2.0/mlflow/runs/get",
            "/api/2.0/mlflow-artifacts/artifacts?path=../../etc",
            "/api/2.0/mlflow-artifacts/artifacts?path=a%2F..%2F..%2Fb",
        ] {
            assert!(target(&u, bad).is_err(), "{bad} should be refused");
        }
        // Dots inside a name are not traversal.
        assert!(
            target(
                &u,
                "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model.pkl"
            )
            .is_ok()
        );
    }

    #[test]
    fn hop_by_hop_headers_include_connection_listed_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        let listed = connection_listed(&h);
        assert!(is_hop_by_hop(&HeaderName::from_static("x-secret"), &listed));
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING, &listed));
        assert!(!is_hop_by_hop(&header::CONTENT_TYPE, &listed));
    }

    #[test]
    fn bad_upstream_settings_are_refused() {
        let cfg = |base: &str| UpstreamConfig {
            base: Url::parse(base).unwrap(),
            token: None,
            basic: None,
            forward_auth: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_body_bytes: 1,
        };
        assert!(Upstream::new(cfg("file:///etc")).is_err());
        assert!(Upstream::new(cfg("http://h/?q=1")).is_err());
    }
}
