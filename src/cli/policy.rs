//! `model-ledger policy validate | test | replay`: the Cedar policies, checked offline.
//!
//! `validate` and `test` need no database, so they can gate a policy change in CI before any
//! server sees it; `replay` reads a store to show what a candidate policy set would have
//! decided differently about history. A changed decision is a finding, not a failure, so
//! `replay` exits 0 either way.

use std::path::PathBuf;
use std::process::ExitCode;

use super::data_dir::existing_policy_dir;
use super::{CliError, open_store, period, print_json};
use crate::config::{PolicyArgs, StoreArgs};
use crate::reports::ReportError;

/// Prints the policy count, files and digest, or the first error (file, line and Cedar's
/// message) with exit 1.
pub fn validate(policy: PolicyArgs, data_dir: PathBuf) -> Result<ExitCode, CliError> {
    let dir = existing_policy_dir(policy.policies.as_deref(), &data_dir)?;
    match crate::policy::validate_dir(&dir) {
        Ok(report) => {
            println!(
                "policies OK: {} policies in {} ({}), digest {}",
                report.policy_ids.len(),
                dir.display(),
                report.policy_files.len(),
                report.digest
            );
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs a cases file; exits 1 when any case fails.
pub fn test(file: PathBuf, policy: PolicyArgs, data_dir: PathBuf) -> Result<ExitCode, CliError> {
    let dir = existing_policy_dir(policy.policies.as_deref(), &data_dir)?;
    let report = crate::policy::run_policy_tests(&dir, &file)?;
    println!("{report}");
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the changed decisions as JSON, and counts on stderr.
pub async fn replay(
    policy: PolicyArgs,
    store_args: StoreArgs,
    from: Option<String>,
    to: Option<String>,
) -> Result<ExitCode, CliError> {
    let Some(dir) = policy.policies.clone() else {
        return Err(ReportError::Invalid(
            "--policies DIR (the candidate policy set) is required".into(),
        )
        .into());
    };
    // Through `ReportError`, whose message names the policies ("policies: …").
    let engine =
        crate::policy::PolicyEngine::load(&dir, policy.group_names()).map_err(ReportError::from)?;
    let db = open_store(&store_args).await?;
    let summary = crate::reports::replay::replay(db.as_ref(), &engine, period(&from, &to)?).await?;
    print_json(&summary)?;
    eprintln!(
        "{} decisions replayed, {} would change, {} skipped",
        summary.decisions,
        summary.changed.len(),
        summary.skipped
    );
    Ok(ExitCode::SUCCESS)
}
