//! A fast webhook receiver for `scripts/bench-webhooks.sh` (with `RECEIVER=rust`).
//!
//! The benchmark's Python receiver (standard library, one thread per connection, the GIL) tops
//! out at a few thousand requests a second on this machine's cores, below what the server is
//! asked to send in the strict throughput scenario; a receiver that saturates first measures
//! itself, not the server. This one answers on tokio + axum with the same contract as the
//! Python one, so the driver can use either:
//!
//! - `POST /hook/{n}`: records (path, `webhook-id`, arrival − payload `timestamp`) and answers
//!   200 at once; `POST /hang`: answers only after 60 s (longer than the server's timeout).
//! - `GET /stats?paths=/hook/0,/hook/1`: `{"deliveries", "duplicates", "p50", "p99", "max"}`
//!   (milliseconds) over the given paths, or all of them; `POST /reset` forgets everything.
//!
//! ```text
//! cargo build --release --example webhook_receiver
//! target/release/examples/webhook_receiver   # prints the port it listens on, 127.0.0.1 only
//! ```
//! Latency is measured with the wall clock against the server's RFC 3339 timestamp, as the
//! Python receiver does, so both give the same reading of commit → first attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Default)]
struct Arrivals {
    /// (path, delivery id, latency in ms)
    seen: Vec<(String, String, f64)>,
}

type Shared = Arc<Mutex<Arrivals>>;

async fn hook(
    State(arrivals): State<Shared>,
    Path(n): Path<String>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let now = chrono::Utc::now();
    let sent = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["timestamp"].as_str().map(str::to_string))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    if let Some(sent) = sent {
        let latency = (now - sent.with_timezone(&chrono::Utc))
            .num_microseconds()
            .unwrap_or(0);
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Ok(mut a) = arrivals.lock() {
            a.seen
                .push((format!("/hook/{n}"), id, latency as f64 / 1000.0));
        }
    }
    "ok"
}

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "ok"
}

async fn stats(
    State(arrivals): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let wanted: Option<HashSet<&str>> = q.get("paths").map(|p| p.split(',').collect());
    let (mut latencies, ids) = match arrivals.lock() {
        Ok(a) => {
            let picked: Vec<&(String, String, f64)> = a
                .seen
                .iter()
                .filter(|(path, _, _)| wanted.as_ref().is_none_or(|w| w.contains(path.as_str())))
                .collect();
            (
                picked.iter().map(|s| s.2).collect::<Vec<f64>>(),
                picked.iter().map(|s| s.1.clone()).collect::<Vec<String>>(),
            )
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    latencies.sort_by(f64::total_cmp);
    let unique: HashSet<&String> = ids.iter().collect();
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
    };
    axum::Json(json!({
        "deliveries": latencies.len(),
        "duplicates": ids.len() - unique.len(),
        "p50": pct(50), "p99": pct(99), "max": latencies.last(),
    }))
}

async fn reset(State(arrivals): State<Shared>) -> &'static str {
    if let Ok(mut a) = arrivals.lock() {
        a.seen.clear();
    }
    "ok"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let arrivals: Shared = Arc::default();
    let app = Router::new()
        .route("/hook/{n}", post(hook))
        .route("/hang", post(hang))
        .route("/stats", get(stats))
        .route("/reset", post(reset))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    axum::serve(listener, app).await
}
