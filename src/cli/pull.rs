//! `model-ledger pull URI DIR`: downloads a version's files and checks each SHA-256.
//!
//! The summary goes to stderr, leaving stdout empty for scripts; any mismatch is an error, so
//! a deployment step that pulls cannot go on with a file the registry never recorded.

use std::process::ExitCode;

use super::{CliError, client, client_failure};
use crate::config::PullArgs;

pub async fn run(args: PullArgs) -> Result<ExitCode, CliError> {
    let client = client(&args.client)?;
    let (name, version, files) = client
        .pull(&args.uri, &args.dir)
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    eprintln!(
        "pulled {name} version {version}: {files} files into {}, every SHA-256 matched",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
