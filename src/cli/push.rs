//! `model-ledger push NAME DIR`: uploads a directory as a new version of NAME.
//!
//! Only the version number goes to stdout, so a CI script can capture it
//! (`v=$(model-ledger push fraud ./model)`) and promote exactly what it uploaded.

use std::process::ExitCode;

use super::{CliError, client};
use crate::config::PushArgs;

pub async fn run(args: PushArgs) -> Result<ExitCode, CliError> {
    let client = client(&args.client)?;
    let version = client.push(&args.name, &args.dir).await?;
    println!("{version}");
    Ok(ExitCode::SUCCESS)
}
