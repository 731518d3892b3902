//! HTTP load benchmark for a running model-ledger: N concurrent clients, fixed duration, and
//! p50/p95/p99 latency plus throughput for one scenario.
//!
//! ```text
//! cargo run --release --example bench -- --url http://127.0.0.1:8080 --token "$TOKEN" \
//!     --scenario resolve --clients 32 --seconds 10 [--models 64] [--versions 3]
//! ```
//! Scenarios (each request picks a random model among `--models`, and a random version among
//! the first `--versions` where it names one):
//!
//! * `healthz`: `GET /healthz`, no authentication and no store: the HTTP ceiling of this
//!   machine, to read the other scenarios against.
//! * native API: `resolve` (models:/NAME/Production), `get-version`, `get-model`,
//!   `create-version`, `transition` (alternating Staging/Production with
//!   archive_existing_versions).
//! * MLflow wire API (`/api/2.0/mlflow`): `mlflow-alias` (alias `champion`),
//!   `mlflow-get-version`, `mlflow-get-model`, `mlflow-latest-versions`, `mlflow-search`
//!   (`max_results=100`), `mlflow-transition` (as `transition`), `mlflow-create-version`.
//!
//! `setup` creates the models through the native API, three versions each, and puts version 1
//! in Production. `setup-mlflow` creates them through the MLflow API, `--versions` versions
//! each, with the newest in Production, the one before in Staging and alias `champion` on the
//! newest. Run one of them once first, with a token allowed to do so. The clients reuse
//! keep-alive connections, like a model server resolving its model. Non-2xx answers are
//! counted as errors; their statuses are summed up on stderr with the first few bodies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const SCENARIOS: &[&str] = &[
    "healthz",
    "resolve",
    "get-version",
    "get-model",
    "create-version",
    "transition",
    "mlflow-alias",
    "mlflow-get-version",
    "mlflow-get-model",
    "mlflow-latest-versions",
    "mlflow-search",
    "mlflow-transition",
    "mlflow-create-version",
];

/// The alias `setup-mlflow` sets on every model and `mlflow-alias` reads.
const ALIAS: &str = "champion";
/// Error bodies printed per run (the rest are only counted).
const PRINTED_ERRORS: u64 = 5;
const MLFLOW: &str = "/api/2.0/mlflow";

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "MODEL_LEDGER_TOKEN")]
    token: String,
    #[arg(long, default_value = "resolve")]
    scenario: String,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    models: u64,
    /// Versions per model: created by `setup-mlflow`, addressed by the version reads and the
    /// transitions.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    versions: u64,
    #[arg(long, default_value = "bench")]
    prefix: String,
}

/// What one client measured: latencies of the 2xx answers (µs), and the other answers by
/// status (0: the request failed before a status).
struct Measured {
    latencies: Vec<u32>,
    errors: BTreeMap<u16, u64>,
}

fn request(
    client: &reqwest::Client,
    args: &Args,
    rng: &mut StdRng,
    counter: &AtomicU64,
    i: u64,
) -> reqwest::RequestBuilder {
    let url = &args.url;
    let model = format!("{}-{}", args.prefix, rng.gen_range(0..args.models));
    let version = rng.gen_range(1..=args.versions);
    let alternate_stage = || {
        if counter.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            "Staging"
        } else {
            "Production"
        }
    };
    let builder = match args.scenario.as_str() {
        "healthz" => return client.get(format!("{url}/healthz")),
        "resolve" => client.get(format!(
            "{url}/api/v1/resolve?uri=models:/{model}/Production"
        )),
        "get-version" => client.get(format!("{url}/api/v1/models/{model}/versions/{version}")),
        "get-model" => client.get(format!("{url}/api/v1/models/{model}")),
        "create-version" => client
            .post(format!("{url}/api/v1/models/{model}/versions"))
            .json(&json!({"source": format!("s3://bench/{model}/{i}")})),
        "transition" => client
            .post(format!(
                "{url}/api/v1/models/{model}/versions/{version}/stage"
            ))
            .json(&json!({"stage": alternate_stage(), "archive_existing_versions": true})),
        "mlflow-alias" => client
            // Bench model names (`bench-N`) need no URL encoding.
            .get(format!(
                "{url}{MLFLOW}/registered-models/alias?name={model}&alias={ALIAS}"
            )),
        "mlflow-get-version" => client.get(format!(
            "{url}{MLFLOW}/model-versions/get?name={model}&version={version}"
        )),
        "mlflow-get-model" => {
            client.get(format!("{url}{MLFLOW}/registered-models/get?name={model}"))
        }
        // What `MlflowClient.get_latest_versions(name)` sends: no stages, so all of them.
        "mlflow-latest-versions" => client
            .post(format!(
                "{url}{MLFLOW}/registered-models/get-latest-versions"
            ))
            .json(&json!({"name": model})),
        "mlflow-search" => client.get(format!(
            "{url}{MLFLOW}/registered-models/search?max_results=100"
        )),
        // The MLflow client sends the version as a string and the flag as a boolean.
        "mlflow-transition" => client
            .post(format!("{url}{MLFLOW}/model-versions/transition-stage"))
            .json(&json!({
                "name": model,
                "version": version.to_string(),
                "stage": alternate_stage(),
                "archive_existing_versions": true,
            })),
        "mlflow-create-version" => client
            .post(format!("{url}{MLFLOW}/model-versions/create"))
            .json(&json!({"name": model, "source": format!("s3://bench/{model}/{i}")})),
        other => unreachable!("scenario {other} was checked in main"),
    };
    builder.bearer_auth(&args.token)
}

async fn run_client(
    client: reqwest::Client,
    args: Arc<Args>,
    worker: u64,
    deadline: Instant,
    counter: Arc<AtomicU64>,
    printed: Arc<AtomicU64>,
) -> Measured {
    let mut rng = StdRng::seed_from_u64(worker ^ 0x6d6f_64656c);
    let mut measured = Measured {
        latencies: Vec::with_capacity(200_000),
        errors: BTreeMap::new(),
    };
    let mut i = worker;
    while Instant::now() < deadline {
        let builder = request(&client, &args, &mut rng, &counter, i);
        i += args.clients;
        let t = Instant::now();
        let (status, body) = match builder.send().await {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(_) => {
                    let micros = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    measured.latencies.push(micros);
                    continue;
                }
                Err(e) => (0, format!("reading the body failed: {e}")),
            },
            Ok(resp) => (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            ),
            Err(e) => (0, format!("request failed: {e}")),
        };
        *measured.errors.entry(status).or_default() += 1;
        if printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
            let body: String = body.chars().take(300).collect();
            eprintln!("scenario={} error {status}: {body}", args.scenario);
        }
    }
    measured
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients as usize * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    match args.scenario.as_str() {
        "setup" => return setup(&client, &args).await,
        "setup-mlflow" => return setup_mlflow(&client, &args).await,
        s if SCENARIOS.contains(&s) => {}
        other => {
            return Err(format!(
                "unknown scenario {other}; one of setup, setup-mlflow, {}",
                SCENARIOS.join(", ")
            )
            .into());
        }
    }
    let args = Arc::new(args);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let printed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|worker| {
            tokio::spawn(run_client(
                client.clone(),
                args.clone(),
                worker,
                deadline,
                counter.clone(),
                printed.clone(),
            ))
        })
        .collect();
    let mut all = Vec::new();
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for t in tasks {
        let measured = t.await?;
        all.extend(measured.latencies);
        for (status, n) in measured.errors {
            *by_status.entry(status).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let errors: u64 = by_status.values().sum();
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
    if errors > 0 {
        let statuses: Vec<String> = by_status
            .iter()
            .map(|(status, n)| format!("{status}:{n}"))
            .collect();
        eprintln!(
            "scenario={} errors by status (0 = no answer): {}",
            args.scenario,
            statuses.join(" ")
        );
    }
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

/// One MLflow write; a non-2xx answer is an error naming the endpoint, unless it is one of
/// `tolerated` MLflow error codes.
async fn mlflow_post(
    client: &reqwest::Client,
    args: &Args,
    endpoint: &str,
    body: Value,
    tolerated: &[&str],
) -> Result<Value, Box<dyn std::error::Error>> {
    let resp = client
        .post(format!("{}{MLFLOW}/{endpoint}", args.url))
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    let code = answer["error_code"].as_str().unwrap_or_default();
    if tolerated.contains(&code) {
        return Ok(answer);
    }
    Err(format!("{endpoint} {body}: {status} {answer}").into())
}

/// `--models` models through the MLflow API, `--versions` versions each; the newest version in
/// Production, the one before in Staging, alias `champion` on the newest. Models that already
/// exist get `--versions` more versions.
async fn setup_mlflow(
    client: &reqwest::Client,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut newest = 0;
    for m in 0..args.models {
        let name = format!("{}-{m}", args.prefix);
        mlflow_post(
            client,
            args,
            "registered-models/create",
            json!({"name": name}),
            &["RESOURCE_ALREADY_EXISTS"],
        )
        .await?;
        let mut created = Vec::new();
        for n in 0..args.versions {
            let answer = mlflow_post(
                client,
                args,
                "model-versions/create",
                json!({"name": name, "source": format!("s3://bench/{name}/setup-{n}")}),
                &[],
            )
            .await?;
            let version = answer["model_version"]["version"]
                .as_str()
                .ok_or_else(|| format!("model-versions/create answered {answer}"))?
                .to_string();
            created.push(version);
        }
        let promote = |stage: &str, version: &str| {
            mlflow_post(
                client,
                args,
                "model-versions/transition-stage",
                json!({"name": name, "version": version, "stage": stage,
                       "archive_existing_versions": true}),
                &[],
            )
        };
        let last = created.last().cloned().unwrap_or_default();
        if created.len() >= 2 {
            promote("Staging", created[created.len() - 2].as_str()).await?;
        }
        promote("Production", last.as_str()).await?;
        mlflow_post(
            client,
            args,
            "registered-models/alias",
            json!({"name": name, "alias": ALIAS, "version": last}),
            &[],
        )
        .await?;
        newest = last.parse().unwrap_or(0);
    }
    println!(
        "set up {} models through the MLflow API with {} new versions each (newest {newest}: Production and alias {ALIAS}) in {:.1} s",
        args.models,
        args.versions,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
