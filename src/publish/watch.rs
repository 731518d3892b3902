//! `model-ledger watch`: a small downstream deployment that follows `models:/NAME/STAGE` (or
//! `models:/NAME@ALIAS`), puts each new version in place and serves what it runs on
//! `GET /current`, pushed by events instead of polled with a TTL cache.
//!
//! Events come from NATS JetStream when a NATS URL is given (an ordered consumer on
//! `<prefix>.<model>.*`, new messages only), otherwise from the registry's own SSE stream
//! (`GET /api/v1/events/stream?model=NAME`), so it works against a server without NATS too.
//! It subscribes first and resolves the URI second, so a change committed in between arrives
//! as an event and is not missed. On every event that can change what the URI names (stage
//! transitions, aliases, deletions) it re-resolves rather than trusting the event alone, so
//! duplicates, gaps or reordering can only cause an extra lookup, never a wrong answer.
//!
//! With a download directory, each new version is pulled into `DIR/<version>/` with every
//! file's SHA-256 checked against the manifest, then the hook command runs (with the version,
//! directory and digest in its environment). A failed download or hook is logged and shown in
//! `/current` as `last_error`; the previous version stays the one `/current` reports as `dir`.
//!
//! Limitation: events are filed under the model's name at the time, so after a rename the
//! watcher keeps following the old name.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::relay::{NatsSettings, Publisher};
use super::subject::model_filter;

/// Event types after which the watched URI may name another version.
const RELEVANT: [&str; 6] = [
    "StageTransitioned",
    "AliasSet",
    "AliasDeleted",
    "VersionDeleted",
    "ModelDeleted",
    "ModelRenamed",
];

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What to watch, where events come from, and what to do with a new version.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub registry_url: String,
    pub token: Option<String>,
    pub model: String,
    /// Stage or `@alias` part of the URI (`Production`, `Staging`, `@champion`).
    pub target: String,
    /// NATS to follow; `None` follows the registry's SSE stream.
    pub nats: Option<NatsSettings>,
    /// Where each new version is downloaded and verified (`DIR/<version>/`); `None`: nowhere.
    pub download_dir: Option<PathBuf>,
    /// Run with `sh -c` after each new version is in place.
    pub hook: Option<String>,
}

impl WatchConfig {
    pub fn uri(&self) -> String {
        if self.target.starts_with('@') {
            format!("models:/{}{}", self.model, self.target)
        } else {
            format!("models:/{}/{}", self.model, self.target)
        }
    }
}

/// What the watcher currently serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Current {
    pub uri: String,
    /// `None` when the URI names no version.
    pub version: Option<u64>,
    pub source: Option<String>,
    /// The version's artifact digest (over its file list), when it has an artifact.
    pub digest: Option<String>,
    /// The directory the current version was downloaded and verified into.
    pub dir: Option<String>,
    /// Where events come from: `nats` or `sse`.
    pub via: &'static str,
    /// Position of the newest event applied.
    pub position: i64,
    /// How many times the served version changed after start-up.
    pub swaps: u64,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the newest version is not in place (a failed download or hook), if it is not.
    pub last_error: Option<String>,
}

type Shared = Arc<Mutex<Current>>;

/// Runs the watcher, serving `GET /current` on `listener`, until `shutdown` completes.
pub async fn run(
    config: WatchConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WatchError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| WatchError::Registry(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<i64>(256);
    let (source, via) = match &config.nats {
        Some(nats) => {
            let publisher = Publisher::connect(nats.clone(), None)
                .await
                .map_err(|e| WatchError::Nats(e.to_string()))?;
            let messages = subscribe(&publisher, nats, &config.model).await?;
            (tokio::spawn(from_nats(messages, tx)), "nats")
        }
        None => {
            let after = newest_position(&http, &config).await?;
            (tokio::spawn(from_sse(config.clone(), after, tx)), "sse")
        }
    };
    let current: Shared = Arc::new(Mutex::new(Current {
        uri: config.uri(),
        via,
        ..Default::default()
    }));
    let first = resolve(&http, &config).await?;
    apply(&current, &config, first, None).await;
    let serving = describe(current.lock().ok().and_then(|c| c.version));
    tracing::info!(uri = %config.uri(), %serving, via, "watching {}: serving {serving}", config.uri());

    let follower = tokio::spawn(follow(rx, http, config, current.clone()));
    let app = Router::new()
        .route("/current", get(show))
        .with_state(current);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    follower.abort();
    source.abort();
    Ok(served?)
}

async fn show(State(current): State<Shared>) -> axum::Json<Current> {
    axum::Json(current.lock().map(|c| c.clone()).unwrap_or_default())
}

async fn subscribe(
    publisher: &Publisher,
    nats: &NatsSettings,
    model: &str,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, WatchError> {
    let js = publisher.jetstream();
    let mut attempts = 0;
    // The relay creates the stream when it first publishes; wait for it briefly.
    let stream = loop {
        match js.get_stream(&nats.stream).await {
            Ok(s) => break s,
            Err(e) if attempts >= 30 => {
                return Err(WatchError::Nats(format!(
                    "stream {} not found ({e}); is --nats-stream the server's?",
                    nats.stream
                )));
            }
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: model_filter(&nats.subject_prefix, model),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| WatchError::Nats(e.to_string()))?;
    consumer
        .messages()
        .await
        .map_err(|e| WatchError::Nats(e.to_string()))
}

/// Forwards the positions of relevant NATS events.
async fn from_nats(
    mut messages: async_nats::jetstream::consumer::pull::Ordered,
    tx: mpsc::Sender<i64>,
) {
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself; errors are worth a log line only.
                tracing::warn!(error = %e, "NATS consumer error");
                continue;
            }
        };
        let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
            tracing::warn!(subject = %message.subject, "ignoring a message that is not JSON");
            continue;
        };
        let position = event["data"]["position"].as_i64().unwrap_or(0);
        let event_type = event["data"]["event_type"].as_str().unwrap_or("");
        if RELEVANT.contains(&event_type) && tx.send(position).await.is_err() {
            return;
        }
    }
}

/// The newest position in the model's history (0 when it has none yet), where the SSE
/// stream starts: older events cannot change what the URI names now.
/// A GET to the registry with the watcher's token, if it has one.
async fn registry_get(
    http: &reqwest::Client,
    config: &WatchConfig,
    url: impl reqwest::IntoUrl,
) -> Result<reqwest::Response, WatchError> {
    let mut request = http.get(url);
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .map_err(|e| WatchError::Registry(e.to_string()))
}

async fn newest_position(http: &reqwest::Client, config: &WatchConfig) -> Result<i64, WatchError> {
    let url = format!(
        "{}/api/v1/models/{}/history?order=desc&limit=1",
        config.registry_url.trim_end_matches('/'),
        percent_encoding::utf8_percent_encode(&config.model, percent_encoding::NON_ALPHANUMERIC)
    );
    let response = registry_get(http, config, url).await?;
    match response.status().as_u16() {
        200 => {
            let body: Value = response
                .json()
                .await
                .map_err(|e| WatchError::Registry(e.to_string()))?;
            Ok(body["events"][0]["position"].as_i64().unwrap_or(0))
        }
        404 => Ok(0),
        status => Err(WatchError::Registry(format!(
            "reading the history of '{}' answered {status}: {}",
            config.model,
            response.text().await.unwrap_or_default()
        ))),
    }
}

/// Follows the registry's SSE stream from `after`, reconnecting (with `after` at the last
/// event seen) when it ends: at the token's expiry, a server restart or a network error.
async fn from_sse(config: WatchConfig, mut after: i64, tx: mpsc::Sender<i64>) {
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for the event stream");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let url = match url::Url::parse_with_params(
            &format!(
                "{}/api/v1/events/stream",
                config.registry_url.trim_end_matches('/')
            ),
            &[
                ("model", config.model.clone()),
                ("after", after.to_string()),
            ],
        ) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(error = %e, "bad registry URL");
                return;
            }
        };
        let mut request = http.get(url);
        if let Some(token) = &config.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                backoff = Duration::from_millis(200);
                let mut parser = SseParser::default();
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let Ok(chunk) = chunk else { break };
                    for (id, event_type) in parser.push(&chunk) {
                        if let Some(id) = id {
                            after = after.max(id);
                            if RELEVANT.contains(&event_type.as_str()) && tx.send(id).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                tracing::info!("event stream ended; reconnecting");
            }
            Ok(response) => {
                let status = response.status().as_u16();
                tracing::warn!(
                    status,
                    "the event stream answered {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach the event stream"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The `id:` and `event:` of each complete Server-Sent Event in a byte stream.
#[derive(Debug, Default)]
struct SseParser {
    buffer: String,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<(Option<i64>, String)> {
        self.buffer
            .push_str(&String::from_utf8_lossy(bytes).replace("\r\n", "\n"));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut event_type = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event_type = v.trim().to_owned();
                }
            }
            // Keep-alive comments (`: …`) carry neither and are skipped.
            if id.is_some() || !event_type.is_empty() {
                events.push((id, event_type));
            }
        }
        events
    }
}

/// Re-resolves after relevant events, coalescing a burst into one lookup.
async fn follow(
    mut positions: mpsc::Receiver<i64>,
    http: reqwest::Client,
    config: WatchConfig,
    current: Shared,
) {
    while let Some(mut position) = positions.recv().await {
        while let Ok(next) = positions.try_recv() {
            position = position.max(next);
        }
        let seen = current.lock().map(|c| c.position).unwrap_or(0);
        if position <= seen {
            continue;
        }
        // Retry briefly: a registry hiccup must not leave a stale version in service.
        for attempt in 0..5 {
            match resolve(&http, &config).await {
                Ok(view) => {
                    apply(&current, &config, view, Some(position)).await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "re-resolve failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}

/// Resolves the URI; `Ok(None)` when it names no version (404).
async fn resolve(
    http: &reqwest::Client,
    config: &WatchConfig,
) -> Result<Option<Value>, WatchError> {
    let url = url::Url::parse_with_params(
        &format!(
            "{}/api/v1/resolve",
            config.registry_url.trim_end_matches('/')
        ),
        &[("uri", config.uri())],
    )
    .map_err(|e| WatchError::Registry(format!("bad registry URL: {e}")))?;
    let response = registry_get(http, config, url).await?;
    match response.status().as_u16() {
        200 => response
            .json::<Value>()
            .await
            .map(Some)
            .map_err(|e| WatchError::Registry(e.to_string())),
        404 => Ok(None),
        status => Err(WatchError::Registry(format!(
            "resolve answered {status}: {}",
            response.text().await.unwrap_or_default()
        ))),
    }
}

/// A served version in words for the log: `version 2`, or `no version` when the URI names
/// none (never Rust's `Some(2)` / `None`).
fn describe(version: Option<u64>) -> String {
    version.map_or_else(|| "no version".to_owned(), |v| format!("version {v}"))
}

/// Records what the URI names now and, when that is a new version, puts it in place.
async fn apply(current: &Shared, config: &WatchConfig, view: Option<Value>, position: Option<i64>) {
    let version = view.as_ref().and_then(|v| v["version"].as_u64());
    let source = view
        .as_ref()
        .and_then(|v| v["source"].as_str().map(str::to_string));
    let digest = view
        .as_ref()
        .and_then(|v| v["artifact"]["digest"].as_str().map(str::to_string));
    let changed = match current.lock() {
        Ok(mut c) => {
            let changed = position.is_none() || c.version != version;
            if position.is_some() && c.version != version {
                c.swaps += 1;
                let (from, to) = (describe(c.version), describe(version));
                tracing::info!(uri = %c.uri, %from, %to, "{} moved from {from} to {to}", c.uri);
            }
            c.version = version;
            c.source = source;
            c.digest = digest.clone();
            if let Some(p) = position {
                c.position = p;
            }
            c.resolved_at = Some(chrono::Utc::now());
            changed
        }
        Err(_) => false,
    };
    let Some(version) = version.filter(|_| changed) else {
        return;
    };
    let outcome = install(config, version, digest.as_deref()).await;
    if let Ok(mut c) = current.lock() {
        match outcome {
            Ok(dir) => {
                c.dir = dir.map(|d| d.display().to_string());
                c.last_error = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "version {version} is not in place: {e}");
                c.last_error = Some(format!("version {version}: {e}"));
            }
        }
    }
}

/// Downloads and verifies `version` into `DIR/<version>/` (when a directory is configured),
/// then runs the hook. Returns the directory.
async fn install(
    config: &WatchConfig,
    version: u64,
    digest: Option<&str>,
) -> Result<Option<PathBuf>, String> {
    let dir = match &config.download_dir {
        Some(base) => {
            let dir = base.join(version.to_string());
            let client =
                crate::artifacts::client::Client::new(&config.registry_url, config.token.clone())
                    .map_err(|e| e.to_string())?;
            let uri = format!("models:/{}/{version}", config.model);
            let (_, _, files) = client
                .pull(&uri, &dir)
                .await
                .map_err(|e| format!("download into {} failed: {e}", dir.display()))?;
            tracing::info!(%uri, dir = %dir.display(), files, "downloaded and verified {uri} into {}", dir.display());
            Some(dir)
        }
        None => None,
    };
    if let Some(hook) = &config.hook {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(hook)
            .env("MODEL_LEDGER_MODEL", &config.model)
            .env("MODEL_LEDGER_VERSION", version.to_string())
            .env("MODEL_LEDGER_URI", config.uri())
            .env("MODEL_LEDGER_DIGEST", digest.unwrap_or(""));
        if let Some(dir) = &dir {
            command.env("MODEL_LEDGER_DIR", dir);
        }
        let status = command
            .status()
            .await
            .map_err(|e| format!("cannot run the hook `{hook}`: {e}"))?;
        if !status.success() {
            return Err(format!("the hook `{hook}` exited with {status}"));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_logged_in_words() {
        assert_eq!(describe(Some(2)), "version 2");
        assert_eq!(describe(None), "no version");
    }

    #[test]
    fn sse_events_are_read_across_chunks() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b": keep-alive\n\nid: 4\nevent: Stage")
                .is_empty()
        );
        let events = parser.push(b"Transitioned\ndata: {}\n\nid: 5\r\nevent: AliasSet\r\n\r\n");
        assert_eq!(
            events,
            [
                (Some(4), "StageTransitioned".to_owned()),
                (Some(5), "AliasSet".to_owned())
            ]
        );
    }

    #[test]
    fn uris_follow_stages_and_aliases() {
        let mut config = WatchConfig {
            registry_url: String::new(),
            token: None,
            model: "churn".into(),
            target: "Production".into(),
            nats: None,
            download_dir: None,
            hook: None,
        };
        assert_eq!(config.uri(), "models:/churn/Production");
        config.target = "@champion".into();
        assert_eq!(config.uri(), "models:/churn@champion");
    }
}
