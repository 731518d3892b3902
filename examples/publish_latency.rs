//! Commit → JetStream latency of the outbox relay, against a running model-ledger started with
//! `--nats-url`.
//!
//! ```text
//! cargo run --example publish_latency -- --url http://127.0.0.1:8080 --token "$TOKEN" \
//!     --nats-url nats://127.0.0.1:4222 --stream MODEL_LEDGER_EVENTS \
//!     --prefix model_ledger.events --writes 2000
//! ```
//! Writes are sequential (one tag write at a time) so each one's latency is measured alone. For
//! each write it records when the HTTP response arrived (the transaction has committed by
//! then) and when the event was delivered by a JetStream consumer (so it was stored and the
//! relay's publish acknowledged, give or take the ack's own trip). `commit→delivered` is the
//! difference, a slight under-estimate of commit → ack by the HTTP response's transfer time;
//! `request→delivered` adds the write itself and is the upper bound.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "MODEL_LEDGER_TOKEN")]
    token: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value = "MODEL_LEDGER_EVENTS")]
    stream: String,
    #[arg(long, default_value = "model_ledger.events")]
    prefix: String,
    #[arg(long, default_value = "publish-bench")]
    model: String,
    #[arg(long, default_value_t = 2000)]
    writes: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/api/v1/models", args.url))
        .bearer_auth(&args.token)
        .json(&json!({ "name": args.model }))
        .send()
        .await?;
    if !(created.status().is_success() || created.status().as_u16() == 409) {
        return Err(format!("cannot create the model: {}", created.text().await?).into());
    }
    // Let the relay create the stream and publish the model's creation.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let js = async_nats::jetstream::new(async_nats::connect(&args.nats_url).await?);
    let stream = js.get_stream(&args.stream).await?;
    let filter = format!(
        "{}.{}.ModelTagSet",
        args.prefix,
        model_ledger::publish::subject::encode_model(&args.model)
    );
    let mut messages = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        })
        .await?
        .messages()
        .await?;

    let tags_url = format!("{}/api/v1/models/{}/tags", args.url, args.model);
    let mut commit_to_delivered = Vec::with_capacity(args.writes);
    let mut request_to_delivered = Vec::with_capacity(args.writes);
    for i in 0..args.writes {
        let sent = Instant::now();
        let response = http
            .put(format!("{tags_url}/k{}", i % 50))
            .bearer_auth(&args.token)
            .json(&json!({ "value": i.to_string() }))
            .send()
            .await?;
        let committed = Instant::now();
        if !response.status().is_success() {
            return Err(format!("write {i} failed: {}", response.text().await?).into());
        }
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| format!("event of write {i} not delivered within 10 s"))?
            .ok_or("consumer ended")??;
        let delivered = Instant::now();
        let event: Value = serde_json::from_slice(&message.payload)?;
        let expected = i.to_string();
        if event["data"]["payload"]["value"].as_str() != Some(expected.as_str()) {
            return Err(format!("write {i}: unexpected event {event}").into());
        }
        commit_to_delivered.push(delivered.saturating_duration_since(committed));
        request_to_delivered.push(delivered - sent);
    }
    report("commit→delivered", &mut commit_to_delivered);
    report("request→delivered", &mut request_to_delivered);
    Ok(())
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{label}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
