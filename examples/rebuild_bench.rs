//! Rebuild benchmark: builds a realistic N-event log (models, versions, tags, transitions with
//! archiving, aliases) with the real domain code and hash chain, imports it into a store, and
//! times `rebuild_projections` (and `audit verify`).
//!
//! ```text
//! cargo run --release --example rebuild_bench -- --events 100000 --database-url sqlite:///tmp/rb.db
//! ```
//!
//! The log is generated and imported in chunks: a window of [`ACTIVE_MODELS`] models receives
//! events, interleaved as a busy registry's are, and a model that has had its share is retired
//! for a new one. Only the window's states and one chunk are in memory, so the benchmark runs
//! at 10,000,000 events as easily as at 100,000. `--generate-only` stops after the import, for
//! timing `model-ledger rebuild` and `model-ledger audit verify` as separate processes
//! (`scripts/bench-rebuild.sh`), where their peak memory is their own.

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

/// Models receiving events at any moment.
const ACTIVE_MODELS: usize = 64;
/// Events a model receives before it is retired (about 57 per model, as in a registry where
/// most models have a few dozen versions).
const EVENTS_PER_MODEL: i64 = 57;
/// Events imported per transaction.
const CHUNK: usize = 5_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    #[arg(long)]
    database_url: String,
    /// Generate and import only; time rebuild and verify separately.
    #[arg(long)]
    generate_only: bool,
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
    // The window: (stream id, model number, state).
    let mut active: Vec<(Uuid, usize, Option<ModelState>)> = Vec::new();
    let mut models = 0usize;
    let mut chunk: Vec<EventEnvelope> = Vec::with_capacity(CHUNK);
    let mut written = 0usize;
    let mut prev = GENESIS_HASH.to_string();
    let mut i = 0u64;
    let started = Instant::now();
    while written + chunk.len() < args.events {
        i += 1;
        if active.len() < ACTIVE_MODELS {
            active.push((Uuid::now_v7(), models, None));
            models += 1;
        }
        let slot = (i as usize * 7919) % active.len();
        if active[slot]
            .2
            .as_ref()
            .is_some_and(|s| s.stream_version >= EVENTS_PER_MODEL)
        {
            active[slot] = (Uuid::now_v7(), models, None);
            models += 1;
        }
        let (id, idx, state) = &mut active[slot];
        let idx = *idx;
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
                position: (written + chunk.len()) as i64 + 1,
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
            chunk.push(envelope);
        }
        if chunk.len() >= CHUNK {
            store.import_events(&chunk).await?;
            written += chunk.len();
            chunk.clear();
        }
    }
    store.import_events(&chunk).await?;
    written += chunk.len();
    println!(
        "generated and imported {written} events over {models} models in {:.2?}",
        started.elapsed()
    );
    if args.generate_only {
        return Ok(());
    }
    let report = store.rebuild_projections_with(None).await?;
    println!("rebuild: {}", report.describe());
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
