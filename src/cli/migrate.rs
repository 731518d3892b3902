//! `model-ledger migrate`: applies pending migrations and exits, for deployments that run
//! `serve --no-migrate` and upgrade the schema as a separate, deliberate step.

use std::process::ExitCode;

use super::{CliError, redact};
use crate::config::StoreArgs;
use crate::store;

pub async fn run(args: StoreArgs) -> Result<ExitCode, CliError> {
    let (url, embedded) = args.resolved_url();
    if embedded {
        // SQLite creates the file but not its directory.
        std::fs::create_dir_all(&args.data_dir)?;
    }
    store::connect(&url, 2).await?.migrate().await?;
    println!("migrations applied to {}", redact(&url));
    Ok(ExitCode::SUCCESS)
}
