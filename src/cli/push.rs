//! `model-ledger push NAME DIR`: uploads a directory as a new version of NAME.
//!
//! Only the version number goes to stdout, so a CI script can capture it
//! (`v=$(model-ledger push fraud ./model)`) and promote exactly what it uploaded.

use std::process::ExitCode;

use super::{CliError, client, client_failure};
use crate::config::PushArgs;

pub async fn run(args: PushArgs) -> Result<ExitCode, CliError> {
    // The client walks the directory itself; checking it here lets the error name the path.
    match std::fs::metadata(&args.dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(CliError::Invalid(format!(
                "{} is not a directory",
                args.dir.display()
            )));
        }
        Err(source) => {
            return Err(CliError::Path {
                path: args.dir,
                source,
            });
        }
    }
    // Read before anything is uploaded, so a wrong path fails without creating a version.
    let signature = match &args.signature {
        Some(path) => Some(std::fs::read(path).map_err(|source| CliError::Path {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let client = client(&args.client)?;
    let version = client
        .push(&args.name, &args.dir, &args.metrics.into_iter().collect())
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    println!("{version}");
    if let Some(bundle) = signature {
        let recorded = client
            .record_signature(&args.name, version, bundle)
            .await
            .map_err(|e| client_failure(&args.client, e))?;
        let status = recorded["status"].as_str().unwrap_or("");
        eprintln!("signature of {}/{version}: {status}", args.name);
        if status != "verified" {
            super::sign_verify::print_differences(&recorded);
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
