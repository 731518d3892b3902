//! Audit benchmark data: generates a realistic N-event hashed log (models, versions with
//! artifacts, verifications, promotions with policy decisions, aliases, tags) with the real
//! domain code and hash chain, writing it as an NDJSON export and/or importing it into a store.
//! `scripts/audit_bench.sh` then times `audit export` and `audit verify` on it.
//!
//! ```text
//! cargo run --release --example audit_bench -- --events 1000000 --ndjson /tmp/1m.ndjson
//! cargo run --release --example audit_bench -- --events 200000 --database-url sqlite:///tmp/ab.db
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use model_ledger::domain::chain::{
    GENESIS_HASH, canonical_json_string, compute_hash, truncate_to_micros,
};
use model_ledger::domain::command::VerificationOutcome;
use model_ledger::domain::events::{ArtifactManifest, CURRENT_SCHEMA_VERSION, ManifestFile};
use model_ledger::domain::names::{AliasName, ModelName, Stage, TagKey};
use model_ledger::domain::state::{ModelState, fold};
use model_ledger::domain::{Actor, Command, EventEnvelope, decide};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Import into this (empty) store.
    #[arg(long)]
    database_url: Option<String>,
    /// Write the log here as NDJSON.
    #[arg(long)]
    ndjson: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let store = match &args.database_url {
        Some(url) => {
            let store = model_ledger::store::connect(url, 4).await?;
            store.migrate().await?;
            if store.head().await?.0 != 0 {
                return Err("the target store must be empty".into());
            }
            Some(store)
        }
        None => None,
    };
    let mut ndjson = match &args.ndjson {
        Some(path) => Some(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)?,
        )),
        None => None,
    };
    let people = [
        ("ana", "ml-admins"),
        ("ci-bot", "ml-ci"),
        ("rm", "ml-release-managers"),
    ];
    let mut states: Vec<(Uuid, Option<ModelState>)> = Vec::new();
    let mut batch: Vec<EventEnvelope> = Vec::with_capacity(5_000);
    let mut prev = GENESIS_HASH.to_string();
    let mut position = 0i64;
    let mut i = 0u64;
    let started = Instant::now();
    while (position as usize) < args.events {
        i += 1;
        if states.is_empty() || i.is_multiple_of(50) {
            states.push((Uuid::now_v7(), None));
        }
        let idx = (i as usize * 7919) % states.len();
        let (id, state) = &mut states[idx];
        let name = ModelName::parse(format!("model-{idx}"))?;
        let versions = state.as_ref().map(|s| s.last_version).unwrap_or(0);
        let (who, group) = people[(i % 3) as usize];
        let command = match (state.is_none(), i % 8) {
            (true, _) => Command::CreateModel {
                name,
                description: "bench".into(),
                tags: BTreeMap::from([(TagKey::parse("team")?, "a".into())]),
            },
            (false, _) if versions < 2 || i % 8 < 2 => Command::CreateVersion {
                name,
                source: format!("s3://bench/{idx}/{i}"),
                run_id: Some(format!("run-{i}")),
                description: String::new(),
                tags: BTreeMap::new(),
                metrics: BTreeMap::from([("f1".into(), 0.9)]),
                signature: None,
                input_example: None,
                artifact: Some(ArtifactManifest {
                    location: format!("s3://bench/{idx}/{i}"),
                    files: vec![ManifestFile {
                        path: "model.bin".into(),
                        size: 1024,
                        sha256: format!("{:064x}", i),
                    }],
                    digest: format!("{:064x}", i * 31),
                }),
                run_evidence: None,
            },
            (false, 2) => Command::RecordVerification {
                name,
                version: versions,
                outcome: VerificationOutcome::Verified {
                    digest: format!("{:064x}", i),
                    files: 1,
                },
            },
            (false, 3 | 4) => Command::TransitionStage {
                name,
                version: versions - (i % 2),
                stage: if i.is_multiple_of(3) {
                    Stage::Production
                } else {
                    Stage::Staging
                },
                comment: Some("bench".into()),
                archive_existing_versions: true,
            },
            (false, 5) => Command::SetAlias {
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
        let actor = Actor {
            subject: who.into(),
            issuer: "https://idp.bench".into(),
            display_name: None,
        };
        let decision = serde_json::json!({
            "allowed": true,
            "action": command.action().as_str(),
            "principal": format!("ModelLedger::User::\"{who}@https://idp.bench\""),
            "resource": format!("ModelLedger::RegisteredModel::\"model-{idx}\""),
            "policy_ids": ["bench-policy"],
            "reason": "permitted by bench-policy",
            "errors": [],
            "policy_set_digest": "0".repeat(64),
            "request": {"groups": [group], "is_service_account": false},
        });
        let request_id = Uuid::new_v4().to_string();
        let now = truncate_to_micros(Utc::now());
        for payload in payloads {
            *state = fold(state.take(), *id, &payload, now, &actor);
            position += 1;
            let mut envelope = EventEnvelope {
                position,
                event_id: Uuid::now_v7(),
                stream_id: *id,
                stream_version: state.as_ref().map(|s| s.stream_version).unwrap_or(1),
                model_name: format!("model-{idx}"),
                event_type: payload.event_type().to_string(),
                schema_version: CURRENT_SCHEMA_VERSION,
                payload: as_stored(&serde_json::to_value(&payload)?)?,
                occurred_at: now,
                actor: actor.clone(),
                request_id: Some(request_id.clone()),
                correlation_id: None,
                decision: Some(as_stored(&decision)?),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            envelope.hash = compute_hash(&prev, &envelope);
            prev = envelope.hash.clone();
            if let Some(out) = ndjson.as_mut() {
                serde_json::to_writer(&mut *out, &envelope)?;
                out.write_all(b"\n")?;
            }
            if store.is_some() {
                batch.push(envelope);
            }
        }
        if let Some(store) = &store
            && batch.len() >= 5_000
        {
            store.import_events(&batch).await?;
            batch.clear();
        }
    }
    if let Some(store) = &store {
        store.import_events(&batch).await?;
        store.rebuild_projections().await?;
    }
    if let Some(mut out) = ndjson {
        out.flush()?;
    }
    println!(
        "generated {position} events over {} models in {:.2?} (head {prev})",
        states.len(),
        started.elapsed()
    );
    Ok(())
}

/// A JSON member as a store gives it back (and so as `audit export` writes it): parsed from the
/// canonical text the store keeps, so its keys come out sorted whatever serde_json's map order.
fn as_stored(value: &serde_json::Value) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(&canonical_json_string(value))
}
