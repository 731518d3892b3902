//! `model-ledger watch`: a small downstream server that follows `models:/NAME/STAGE` over NATS
//! and serves the version it currently points at on `GET /current`.
//!
//! It exists to show (and test) the consumer side of the event stream: a deployment that swaps
//! models on promotion without polling the registry.

use std::process::ExitCode;

use super::CliError;
use crate::app;
use crate::config::WatchArgs;
use crate::publish::NatsSettings;
use crate::publish::watch::{self, WatchConfig};

pub async fn run(args: WatchArgs) -> Result<ExitCode, CliError> {
    let Some(nats) = NatsSettings::from_args(&args.nats) else {
        eprintln!("error: watch needs --nats-url");
        return Ok(ExitCode::from(2));
    };
    let config = WatchConfig {
        registry_url: args.registry_url,
        token: args.token,
        model: args.model,
        target: args.target,
        nats,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "watching {} on http://{}/current",
        config.uri(),
        listener.local_addr()?
    );
    watch::run(config, listener, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
