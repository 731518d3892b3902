//! `model-ledger serve`: builds the application, binds the port, prints where it listens and
//! serves until Ctrl-C or SIGTERM.
//!
//! The address is printed only after the bind succeeds, so a script that reads the first line
//! (the tests do, with `--listen 127.0.0.1:0`) always learns a port that is really open.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    let finished = Arc::new(AtomicBool::new(false));
    let grace = args.shutdown_timeout;
    let signal = {
        let finished = finished.clone();
        async move {
            app::shutdown_signal().await;
            arm_exit_deadline(grace, finished);
        }
    };
    app::serve(listener, built.state, signal).await?;
    finished.store(true, Ordering::SeqCst);
    Ok(ExitCode::SUCCESS)
}

/// Makes sure the process ends soon after the shutdown signal, whatever it is stuck on.
///
/// `app::serve` bounds its own wait by `--shutdown-timeout`, but that needs the runtime's
/// worker threads, and a log write into a pipe nobody drains (`serve 2>&1 | less`, a hung
/// `tee`) blocks them. So a plain thread exits the process if serving has not finished a
/// little after the timeout, and a second Ctrl-C exits at once, as people expect.
fn arm_exit_deadline(grace: Duration, finished: Arc<AtomicBool>) {
    let deadline = grace + Duration::from_secs(2);
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        if !finished.load(Ordering::SeqCst) {
            std::process::exit(1);
        }
    });
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
