//! `model-ledger migrate-store --from URL --to URL`: copies a whole event log into an empty
//! store, verifying the chain on the way, then rebuilds the target's projections.
//!
//! This is how a trial SQLite install becomes a PostgreSQL one. Only events are copied:
//! projections are derived from them, so rebuilding on the target is both simpler and a check
//! that the copy is complete. The target must be empty because appending someone else's history
//! after existing events would break the chain's positions and hashes.

use std::process::ExitCode;

use super::{CliError, redact};
use crate::config::MigrateStoreArgs;
use crate::domain::chain::{ChainBreak, ChainVerifier};
use crate::reports::ReportError;
use crate::reports::verify::{Verified, verify_store};
use crate::store::{self, EventQuery, Store, StoreError};

/// Events read per round trip when scanning a whole log.
const PAGE: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum MigrateStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Chain(ChainBreak),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Report(#[from] ReportError),
}

pub async fn run(args: MigrateStoreArgs) -> Result<ExitCode, CliError> {
    // Opening a missing SQLite source would create an empty one and "copy" nothing.
    if let Some(path) = super::data_dir::sqlite_path(&args.from)
        && !path.is_file()
    {
        return Err(MigrateStoreError::Refused(format!(
            "--from names no SQLite database: {} does not exist (the trial install's file is \
             <data dir>/model-ledger.db)",
            super::data_dir::absolute(&path).display()
        ))
        .into());
    }
    let source = store::connect(&args.from, 4).await?;
    let target = store::connect(&args.to, 4).await?;
    target.migrate().await?;
    let head = copy_log(source.as_ref(), target.as_ref()).await?;
    println!(
        "copied {} events to {} (head {}); projections rebuilt",
        head.count,
        redact(&args.to),
        head.head_hash
    );
    // The log names artifact files, it does not hold them; the one step people miss.
    eprintln!(
        "note: artifact files were not copied. Versions keep their locations, so start the new \
         server with the same artifact store: the same --data-dir (its artifacts/ directory), \
         or copy <data dir>/artifacts/ into the new --artifact-store; also keep \
         <data dir>/checkpoint-ed25519.pem so earlier checkpoints still verify. See \
         docs/operations.md#moving-a-trial-install-to-postgresql."
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies every event from `source` to an empty `target`, verifying the chain as it goes,
/// then rebuilds the target's projections and verifies the target's chain.
pub async fn copy_log(
    source: &dyn Store,
    target: &dyn Store,
) -> Result<Verified, MigrateStoreError> {
    if target.head().await?.0 != 0 {
        return Err(MigrateStoreError::Refused(
            "the target store already has events; migrate-store only fills an empty store".into(),
        ));
    }
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let batch = source
            .read_events(&EventQuery {
                after_position: Some(after),
                limit: PAGE,
                ..Default::default()
            })
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            verifier.push(event).map_err(MigrateStoreError::Chain)?;
        }
        target.import_events(&batch).await?;
    }
    target.rebuild_projections().await?;
    Ok(verify_store(target, None).await?)
}
