//! The `model-ledger` command line: this dispatcher and one file per subcommand.
//!
//! A subcommand file turns parsed options (the clap types in [`crate::config`]) into calls on
//! the library and prints the answer. Behaviour a test or the server needs lives in the
//! library, never here, so the binary and the tests exercise the same code. This is also the
//! one module allowed to know both the option types and the modules they configure: keeping
//! that glue here is what lets [`crate::config`] and [`crate::reports`] stay independent of
//! each other.
//!
//! Conventions every subcommand follows: answers go to stdout (so they can be piped), progress
//! and summaries to stderr; an error prints `error: …` on stderr and exits 1; a finding that is
//! not an error (a broken chain, a failed policy case) is printed and exits 1 without
//! `error:`.

mod audit;
mod data_dir;
mod migrate;
mod migrate_store;
mod policy;
mod pull;
mod push;
mod rebuild;
mod serve;
mod sign_verify;
mod token;
mod verify;
// Approval workflow (#17).
mod approvals;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::StartError;
use crate::artifacts::client::{Client, ClientError};
use crate::auth::AuthError;
use crate::config::{Cli, ClientArgs, Commands, LogFormat, PolicyCommand, StoreArgs};
use crate::policy::PolicyError;
use crate::publish::watch::WatchError;
use crate::reports::kinds::Period;
use crate::reports::{ReportError, parse_time};
use crate::store::{self, SharedStore, StoreError};

pub use migrate_store::{MigrateStoreError, copy_log};

/// Every way a subcommand can fail. Each variant shows its source unchanged, so the message
/// after `error: ` is the library's own.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error(transparent)]
    MigrateStore(#[from] MigrateStoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What an offline command reads is not where it looked (see [`data_dir`]).
    #[error(transparent)]
    NotFound(#[from] data_dir::NotFound),
    /// An option value the library cannot take as it is (e.g. a malformed duration).
    #[error("{0}")]
    Invalid(String),
    /// A path named on the command line cannot be used; the message names it.
    #[error("{}: {source}", path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server refused a request that carried no token: say how to give one.
    #[error("{0}; no token was given: pass --token or set MODEL_LEDGER_TOKEN")]
    NoToken(ClientError),
    /// Writing an answer to stdout failed.
    #[error("writing stdout: {0}")]
    Stdout(std::io::Error),
    /// Whoever read stdout has gone (`… | head` once `head` has its lines). Not a failure:
    /// the reader stopped because it had what it wanted, so [`run`] exits 0 without a word.
    #[error("stdout was closed by its reader")]
    StdoutClosed,
}

impl CliError {
    /// Classifies a failed write to stdout (see [`CliError::StdoutClosed`]).
    fn stdout(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::StdoutClosed
        } else {
            CliError::Stdout(error)
        }
    }
}

/// Runs the parsed command line to completion and returns the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    // Dropping a runtime waits without limit for blocking tasks (a file read stuck on a network
    // disk, say); once the command has its answer nothing they do matters, so the wait is
    // bounded and a stopped server really exits.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(code) => code,
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Colour codes are for people at a terminal; in a file, a pipe or a log collector they are
/// noise. `NO_COLOR` (any non-empty value, see no-color.org) turns them off on a terminal too.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

async fn dispatch(command: Commands) -> Result<ExitCode, CliError> {
    // One process-wide TLS provider, so reqwest, sqlx and async-nats never disagree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match command {
        Commands::Serve(args) => serve::run(args).await,
        Commands::Migrate(args) => migrate::run(args).await,
        Commands::Rebuild(args) => rebuild::run(args).await,
        Commands::MigrateStore(args) => migrate_store::run(args).await,
        Commands::Token(args) => token::run(args),
        Commands::Policy(PolicyCommand::Validate { policy, data_dir }) => {
            policy::validate(policy, data_dir)
        }
        Commands::Policy(PolicyCommand::Test {
            file,
            policy,
            data_dir,
        }) => policy::test(file, policy, data_dir),
        Commands::Policy(PolicyCommand::Replay {
            policy,
            store,
            from,
            to,
        }) => policy::replay(policy, store, from, to).await,
        Commands::Audit(command) => audit::run(command).await,
        Commands::Watch(args) => watch::run(args).await,
        Commands::Push(args) => push::run(args).await,
        Commands::Pull(args) => pull::run(args).await,
        Commands::Verify(args) => verify::run(args).await,
        Commands::SignVerify(args) => sign_verify::run(args).await,
        Commands::Request(args) => approvals::request(args).await,
        Commands::Approve(args) => approvals::decide(args, "approve").await,
        Commands::Reject(args) => approvals::decide(args, "reject").await,
        Commands::Requests(args) => approvals::inbox(args).await,
    }
}

/// The registry client the artifact subcommands share.
fn client(args: &ClientArgs) -> Result<Client, ClientError> {
    let mut client = Client::new(&args.server, args.token.clone())?;
    client.progress = !args.no_progress;
    Ok(client)
}

/// A client error, with a hint when the server wanted a token and none was given (the
/// server's own message only says a bearer token is missing, not where this command takes it).
fn client_failure(args: &ClientArgs, error: ClientError) -> CliError {
    match error {
        ClientError::Api { status: 401, .. } if args.token.is_none() => CliError::NoToken(error),
        other => other.into(),
    }
}

/// Hides a password in a database URL before printing it.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Opens the store an offline subcommand reads, refusing to create one that is not there. Two
/// connections: these commands run one query at a time, and a small pool leaves the server's
/// connection budget alone.
async fn open_store(args: &StoreArgs) -> Result<SharedStore, CliError> {
    data_dir::require_store(args)?;
    let (url, _) = args.resolved_url();
    // Four connections: `audit verify` reads several pages at once (connections open on demand).
    Ok(store::connect(&url, 4).await?)
}

/// `--from`/`--to` as a report period.
fn period(from: &Option<String>, to: &Option<String>) -> Result<Period, ReportError> {
    Ok(Period {
        from: from.as_deref().map(parse_time).transpose()?,
        to: to.as_deref().map(parse_time).transpose()?,
    })
}

/// Prints `value` as pretty JSON followed by a newline. Encoded first, then written: an
/// encoding error and a closed stdout stay distinct errors.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|e| ReportError::Invalid(e.to_string()))?;
    text.push(b'\n');
    write_stdout(&text)
}

/// Writes an answer to stdout.
fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/ledger"),
            "postgres://app:***@db:5432/ledger"
        );
        assert_eq!(
            redact("postgres://app@db/ledger"),
            "postgres://app@db/ledger"
        );
        assert_eq!(
            redact("sqlite://./data/model-ledger.db"),
            "sqlite://./data/model-ledger.db"
        );
    }
}
