//! HTTP load benchmark for a running model-ledger: N concurrent clients, fixed duration, and
//! p50/p95/p99 latency plus throughput for one scenario.
//!
//! ```text
//! cargo run --release --example bench -- --url http://127.0.0.1:8080 --token "$TOKEN" \
//!     --scenario resolve --clients 32 --seconds 10 [--models 64]
//! ```
//! Scenarios: `resolve` (models:/NAME/Production), `get-version`, `create-version`,
//! `transition` (alternating Staging/Production with archive_existing_versions, spread over
//! `--models` models). `setup` creates the models, three versions each, and puts version 1 in
//! Production (run it once first, with a token allowed to do so). The clients reuse keep-alive
//! connections, like a model server resolving its model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "MODEL_LEDGER_TOKEN")]
    token: String,
    #[arg(long, default_value = "resolve")]
    scenario: String,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    models: usize,
    #[arg(long, default_value = "bench")]
    prefix: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()?;
    if args.scenario == "setup" {
        setup(&client, &args).await?;
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for worker in 0..args.clients {
        let client = client.clone();
        let args = args.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            let mut i = worker;
            while Instant::now() < deadline {
                let model = format!("{}-{}", args.prefix, i % args.models);
                let request = match args.scenario.as_str() {
                    "resolve" => client.get(format!(
                        "{}/api/v1/resolve?uri=models:/{model}/Production",
                        args.url
                    )),
                    "get-version" => {
                        client.get(format!("{}/api/v1/models/{model}/versions/1", args.url))
                    }
                    "create-version" => client
                        .post(format!("{}/api/v1/models/{model}/versions", args.url))
                        .json(&json!({"source": format!("s3://bench/{model}/{i}")})),
                    "transition" => {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let stage = if n.is_multiple_of(2) {
                            "Staging"
                        } else {
                            "Production"
                        };
                        client
                            .post(format!(
                                "{}/api/v1/models/{model}/versions/{}/stage",
                                args.url,
                                n % 3 + 1
                            ))
                            .json(&json!({"stage": stage, "archive_existing_versions": true}))
                    }
                    other => panic!("unknown scenario {other}"),
                };
                let t = Instant::now();
                match request.bearer_auth(&args.token).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let _ = resp.bytes().await;
                        latencies.push(t.elapsed().as_micros() as u32);
                    }
                    Ok(resp) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!(
                                "{} {}",
                                resp.status(),
                                resp.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("request failed: {e}");
                        }
                    }
                }
                i += args.clients;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "scenario={} clients={} seconds={:.1} requests={} errors={} throughput={:.0}/s p50={:.2}ms p95={:.2}ms p99={:.2}ms",
        args.scenario,
        args.clients,
        elapsed,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
    Ok(())
}

async fn setup(client: &reqwest::Client, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    for m in 0..args.models {
        let name = format!("{}-{m}", args.prefix);
        let post = |path: String, body: serde_json::Value| {
            client
                .post(format!("{}{path}", args.url))
                .bearer_auth(&args.token)
                .json(&body)
                .send()
        };
        let r = post("/api/v1/models".into(), json!({"name": name})).await?;
        if !r.status().is_success() && r.status().as_u16() != 409 {
            return Err(format!("create model {name}: {} {}", r.status(), r.text().await?).into());
        }
        for _ in 0..3 {
            post(
                format!("/api/v1/models/{name}/versions"),
                json!({"source": format!("s3://bench/{name}")}),
            )
            .await?
            .error_for_status()?;
        }
        post(
            format!("/api/v1/models/{name}/versions/1/stage"),
            json!({"stage": "Production", "archive_existing_versions": true}),
        )
        .await?
        .error_for_status()?;
    }
    println!("set up {} models", args.models);
    Ok(())
}
