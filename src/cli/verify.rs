//! `model-ledger verify URI`: asks the server to re-hash a version's stored files.
//!
//! This checks the artifact store against the manifest (and records the outcome as an event);
//! the hash chain of the log itself is checked by `audit verify` (see [`super::audit`]). A
//! mismatch is a finding: it is listed file by file on stdout and exits 1.

use std::process::ExitCode;

use super::{CliError, client, client_failure};
use crate::config::ArtifactVerifyArgs;

pub async fn run(args: ArtifactVerifyArgs) -> Result<ExitCode, CliError> {
    let client = client(&args.client)?;
    let report = client
        .verify(&args.uri)
        .await
        .map_err(|e| client_failure(&args.client, e))?;
    if report.verified {
        println!(
            "verified {}/{}: {} files, digest {}",
            report.name,
            report.version,
            report.body["files"],
            report.body["digest"].as_str().unwrap_or("")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("NOT verified {}/{}:", report.name, report.version);
    for f in report.body["failures"].as_array().into_iter().flatten() {
        let path = f["path"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("(version)");
        println!(
            "  {path}: {} (expected {}, actual {})",
            f["reason"].as_str().unwrap_or(""),
            f["expected_sha256"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("-"),
            f["actual_sha256"].as_str().unwrap_or("-")
        );
    }
    Ok(ExitCode::FAILURE)
}
