//! Rebuild benchmark: builds a realistic N-event log (models, versions, tags, transitions with
//! archiving, aliases) with the real domain code and hash chain, imports it into a store, and
//! times `rebuild_projections` (and `audit verify`).
//!
//! ```text
//! cargo run --release --example rebuild_bench -- --events 100000 --database-url sqlite:///tmp/rb.db
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use model_ledger::domain::chain::{GENESIS_HASH, compute_hash, truncate_to_micros};
use model_ledger::domain::events::CURRENT_SCHEMA_VERSION;
use model_ledger::domain::names::{AliasName, ModelName, Stage, TagKey};
use model_ledger::domain::state::{ModelState, fold};
use model_ledger::domain::{Actor, Command, EventEnvelope, decide};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    #[arg(long)]
    database_url: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = model_ledger::store::connect(&args.database_url, 4).await?;
    store.migrate().await?;
    if store.head().await?.0 != 0 {
        return Err("the target store must be empty".into());
    }
    let actor = Actor {
        subject: "bench".into(),
        issuer: "bench".into(),
        display_name: None,
    };
    let mut states: Vec<(Uuid, Option<ModelState>)> = Vec::new();
    let mut log: Vec<EventEnvelope> = Vec::with_capacity(args.events);
    let mut prev = GENESIS_HASH.to_string();
    let mut i = 0u64;
    let started = Instant::now();
    while log.len() < args.events {
        i += 1;
        // Mostly work on existing models; a new model every 50 commands.
        if states.is_empty() || i.is_multiple_of(50) {
            states.push((Uuid::now_v7(), None));
        }
        let idx = (i as usize * 7919) % states.len();
        let (id, state) = &mut states[idx];
        let name = ModelName::parse(format!("model-{idx}"))?;
        let versions = state.as_ref().map(|s| s.last_version).unwrap_or(0);
        let command = match (state.is_none(), i % 6) {
            (true, _) => Command::CreateModel {
                name,
                description: "bench".into(),
                tags: BTreeMap::from([(TagKey::parse("team")?, "a".into())]),
            },
            (false, _) if versions < 2 || i % 6 < 2 => Command::CreateVersion {
                name,
                source: format!("s3://bench/{idx}/{i}"),
                run_id: Some(format!("run-{i}")),
                description: String::new(),
                tags: BTreeMap::new(),
                metrics: BTreeMap::from([("f1".into(), 0.9)]),
                signature: None,
                input_example: None,
                artifact: None,
                run_evidence: None,
            },
            (false, 2 | 3) => Command::TransitionStage {
                name,
                version: versions - (i % 2),
                stage: if i.is_multiple_of(3) {
                    Stage::Production
                } else {
                    Stage::Staging
                },
                comment: None,
                archive_existing_versions: true,
            },
            (false, 4) => Command::SetAlias {
                name,
                alias: AliasName::parse("champion")?,
                version: versions,
            },
            _ => Command::SetVersionTag {
                name,
                version: versions,
                key: TagKey::parse("checked")?,
                value: i.to_string(),
            },
        };
        let Ok(payloads) = decide(state.as_ref(), &command) else {
            continue;
        };
        let now = truncate_to_micros(Utc::now());
        for payload in payloads {
            let next = fold(state.take(), *id, &payload, now, &actor);
            *state = next;
            let stream_version = state.as_ref().map(|s| s.stream_version).unwrap_or(1);
            let mut envelope = EventEnvelope {
                position: log.len() as i64 + 1,
                event_id: Uuid::now_v7(),
                stream_id: *id,
                stream_version,
                model_name: format!("model-{idx}"),
                event_type: payload.event_type().to_string(),
                schema_version: CURRENT_SCHEMA_VERSION,
                payload: serde_json::to_value(&payload)?,
                occurred_at: now,
                actor: actor.clone(),
                request_id: None,
                correlation_id: None,
                decision: Some(serde_json::json!({"allowed": true, "policy_ids": ["bench"]})),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            envelope.hash = compute_hash(&prev, &envelope);
            prev = envelope.hash.clone();
            log.push(envelope);
        }
    }
    println!(
        "generated {} events over {} models in {:.2?}",
        log.len(),
        states.len(),
        started.elapsed()
    );
    let started = Instant::now();
    for chunk in log.chunks(5_000) {
        store.import_events(chunk).await?;
    }
    println!("imported in {:.2?}", started.elapsed());
    let started = Instant::now();
    let count = store.rebuild_projections().await?;
    println!(
        "rebuild: {count} events -> projections in {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let head = model_ledger::reports::verify::verify_store(store.as_ref(), None).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "audit verify: {} events in {secs:.2}s ({:.0} events/s)",
        head.count,
        head.count as f64 / secs
    );
    Ok(())
}
