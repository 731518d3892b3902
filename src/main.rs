//! The `model-ledger` binary: reads the config file, parses the command line and hands it to
//! [`model_ledger::cli::run`]. Everything else lives in the library so tests drive the same
//! code.

use std::process::ExitCode;

use clap::Parser;
use model_ledger::config::{Cli, apply_config_file};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // Before clap parses (the file's values become environment defaults) and before any
    // thread starts (it sets environment variables).
    if let Err(e) = apply_config_file(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    model_ledger::cli::run(Cli::parse())
}
