//! The `model-ledger` binary: reads the config file, parses the command line and hands it to
//! [`model_ledger::cli::run`]. Everything else lives in the library so tests drive the same
//! code.

use std::process::ExitCode;

use clap::Parser;
use model_ledger::config::{Cli, apply_config_file};

/// mimalloc instead of the system allocator. A read answers with a few kilobytes of JSON built
/// from many small strings; profiled under load (docs/performance.md), glibc's malloc, free and
/// its consolidation took about 14% of the server's CPU on the MLflow read paths. mimalloc's
/// per-thread free lists make those calls cheap, and the tests (which link the library, not this
/// binary) still run on the system allocator, so it changes speed, not behaviour.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
