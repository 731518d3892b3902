//! `model-ledger sign-verify URI FILE`: records an OpenSSF model signature for a version.
//!
//! The server decides both halves (see `artifacts::signatures`): whether a trusted key or CA
//! made the signature (refused otherwise, nothing recorded), and whether it covers exactly the
//! version's files (`verified`) or other files (`mismatch`, recorded, listed here, exit 1).

use std::process::ExitCode;

use serde_json::Value;

use super::{CliError, client, client_failure};
use crate::config::SignVerifyArgs;

pub async fn run(args: SignVerifyArgs) -> Result<ExitCode, CliError> {
    let bundle = std::fs::read(&args.signature).map_err(|source| CliError::Path {
        path: args.signature.clone(),
        source,
    })?;
    let client = client(&args.client)?;
    let (name, version) = client
        .resolve(&args.uri)
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    let recorded = client
        .record_signature(&name, version, bundle)
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    let signer = &recorded["signer"];
    let who = match signer["san"].as_array().filter(|s| !s.is_empty()) {
        Some(san) => san
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        None => format!("key {}", signer["key_id"].as_str().unwrap_or("")),
    };
    let status = recorded["status"].as_str().unwrap_or("");
    println!("{status} {name}/{version}: signed by {who}");
    if status == "verified" {
        return Ok(ExitCode::SUCCESS);
    }
    print_differences(&recorded);
    Ok(ExitCode::FAILURE)
}

/// The recorded differences of a `mismatch`, one per line.
pub(super) fn print_differences(recorded: &Value) {
    for line in recorded["differences"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or(""));
    }
    if let Some(more) = recorded["more_differences"].as_u64().filter(|n| *n > 0) {
        println!("  ... and {more} more");
    }
}
