//! `model-ledger rebuild`: recomputes every projection table from the event log.
//!
//! The log is the source of truth and projections are derived from it, so this is the repair
//! for a projection that a bug (or a hand-edited table) left wrong; it also shows how long a
//! full replay takes, which bounds how long a projection change costs to deploy. It runs while
//! servers keep serving and appending: readers see the old projections until one swapping
//! transaction replaces them (see `store::sql::rebuild`).

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
    let report = store.rebuild_projections_with(None).await?;
    println!("{}", report.describe());
    Ok(ExitCode::SUCCESS)
}
