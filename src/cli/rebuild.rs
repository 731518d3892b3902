//! `model-ledger rebuild`: recomputes every projection table from the event log.
//!
//! The log is the source of truth and projections are derived from it, so this is the repair
//! for a projection that a bug (or a hand-edited table) left wrong; it also shows how long a
//! full replay takes, which bounds how long a projection change costs to deploy.

use std::process::ExitCode;

use super::CliError;
use crate::config::StoreArgs;
use crate::store;

pub async fn run(args: StoreArgs) -> Result<ExitCode, CliError> {
    // A repair of an existing log: on a missing SQLite file there is nothing to rebuild.
    super::data_dir::require_store(&args)?;
    let (url, _) = args.resolved_url();
    let store = store::connect(&url, 2).await?;
    store.migrate().await?;
    let started = std::time::Instant::now();
    let count = store.rebuild_projections().await?;
    println!(
        "rebuilt projections from {count} events in {:.2?}",
        started.elapsed()
    );
    Ok(ExitCode::SUCCESS)
}
