//! `model-ledger watch`: a small downstream server that always serves a model's current
//! `models:/NAME/<stage>` version, pushed by NATS instead of polled with a TTL cache.
//!
//! It subscribes first (an ordered JetStream consumer on `<prefix>.<model>.*`, delivering only
//! new messages), then resolves the URI through the registry's HTTP API and caches the answer.
//! Subscribing before resolving means a change committed in between is not missed: it arrives
//! as a message and triggers a re-resolve. On every event that can change what the URI names
//! (stage transitions, aliases, deletions) it re-resolves rather than trusting the event alone,
//! so duplicates, gaps or reordering in the stream can only cause an extra lookup, never a
//! wrong answer. `GET /current` shows what is being served.
//!
//! Limitation: events are filed under the model's name at the time, so after a rename the
//! watcher keeps following the old name's subject.

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

/// What to watch and where.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub registry_url: String,
    pub token: Option<String>,
    pub model: String,
    /// Stage or `@alias` part of the URI (`Production`, `Staging`, `@champion`).
    pub target: String,
    pub nats: NatsSettings,
}

impl WatchConfig {
    pub fn uri(&self) -> String {
        format!("models:/{}/{}", self.model, self.target)
    }
}

/// What the watcher currently serves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Current {
    pub uri: String,
    /// `None` when the URI names no version.
    pub version: Option<u64>,
    pub source: Option<String>,
    /// Position of the newest event applied.
    pub position: i64,
    /// How many times the served version changed after start-up.
    pub swaps: u64,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

type Shared = Arc<Mutex<Current>>;

/// Runs the watcher, serving `GET /current` on `listener`, until `shutdown` completes.
pub async fn run(
    config: WatchConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WatchError> {
    let publisher = Publisher::connect(config.nats.clone(), None)
        .await
        .map_err(|e| WatchError::Nats(e.to_string()))?;
    let messages = subscribe(&publisher, &config).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| WatchError::Registry(e.to_string()))?;
    let current: Shared = Arc::new(Mutex::new(Current {
        uri: config.uri(),
        ..Default::default()
    }));
    let first = resolve(&http, &config).await?;
    apply(&current, first, None);
    let serving = describe(current.lock().ok().and_then(|c| c.version));
    tracing::info!(uri = %config.uri(), %serving, "watching {}: serving {serving}", config.uri());

    let follower = tokio::spawn(follow(messages, http, config, current.clone()));
    let app = Router::new()
        .route("/current", get(show))
        .with_state(current);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    follower.abort();
    Ok(served?)
}

async fn show(State(current): State<Shared>) -> axum::Json<Current> {
    axum::Json(current.lock().map(|c| c.clone()).unwrap_or_default())
}

async fn subscribe(
    publisher: &Publisher,
    config: &WatchConfig,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, WatchError> {
    let js = publisher.jetstream();
    let mut attempts = 0;
    // The relay creates the stream when it first publishes; wait for it briefly.
    let stream = loop {
        match js.get_stream(&config.nats.stream).await {
            Ok(s) => break s,
            Err(e) if attempts >= 30 => return Err(WatchError::Nats(e.to_string())),
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: model_filter(&config.nats.subject_prefix, &config.model),
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

async fn follow(
    mut messages: async_nats::jetstream::consumer::pull::Ordered,
    http: reqwest::Client,
    config: WatchConfig,
    current: Shared,
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
        let seen = current.lock().map(|c| c.position).unwrap_or(0);
        if position <= seen || !RELEVANT.contains(&event_type) {
            continue;
        }
        // Retry briefly: a registry hiccup must not leave a stale version in service.
        for attempt in 0..5 {
            match resolve(&http, &config).await {
                Ok(view) => {
                    apply(&current, view, Some(position));
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
    let mut request = http.get(url);
    if let Some(token) = &config.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| WatchError::Registry(e.to_string()))?;
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

fn apply(current: &Shared, view: Option<Value>, position: Option<i64>) {
    let version = view.as_ref().and_then(|v| v["version"].as_u64());
    let source = view
        .as_ref()
        .and_then(|v| v["source"].as_str().map(str::to_string));
    if let Ok(mut c) = current.lock() {
        if position.is_some() && c.version != version {
            c.swaps += 1;
            let (from, to) = (describe(c.version), describe(version));
            tracing::info!(uri = %c.uri, %from, %to, "{} moved from {from} to {to}", c.uri);
        }
        c.version = version;
        c.source = source;
        if let Some(p) = position {
            c.position = p;
        }
        c.resolved_at = Some(chrono::Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn versions_are_logged_in_words() {
        assert_eq!(describe(Some(2)), "version 2");
        assert_eq!(describe(None), "no version");
    }
}
