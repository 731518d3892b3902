//! `model-ledger serve`: builds the application, binds the port, prints where it listens and
//! serves until Ctrl-C or SIGTERM.
//!
//! The address is printed only after the bind succeeds, so a script that reads the first line
//! (the tests do, with `--listen 127.0.0.1:0`) always learns a port that is really open.

use std::process::ExitCode;

use super::{CliError, redact};
use crate::app;
use crate::config::ServeArgs;

pub async fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    let built = app::build(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    // Absolute, so the `token` hint below works from any directory.
    let data_dir = args
        .store
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| super::data_dir::absolute(&args.store.data_dir));
    let data_dir = data_dir.display().to_string();
    tracing::info!(%url, database = %redact(&built.database_url), %data_dir, "model-ledger is listening");
    println!("model-ledger listening on {url}");
    println!("  store:    {}", redact(&built.database_url));
    println!("  data dir: {data_dir}");
    if built.dev_auth {
        println!(
            "  get a token: model-ledger token --data-dir {data_dir} --sub alice --group ml-admins"
        );
    }
    app::serve(listener, built.state, app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
