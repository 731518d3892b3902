//! Options of `model-ledger watch`, the downstream subscriber: which URI to follow, the
//! registry it asks (the same `--server` / `--token` as every client command), where new
//! versions go, and the few NATS options a subscriber needs (not the server's stream settings).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::ClientArgs;

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The URI to follow: `models:/NAME/STAGE` or `models:/NAME@ALIAS` (or use --model and
    /// --target).
    pub uri: Option<String>,
    /// Model to follow (instead of a URI).
    #[arg(long, conflicts_with = "uri")]
    pub model: Option<String>,
    /// Stage or `@alias` to follow with --model.
    #[arg(long, default_value = "Production", conflicts_with = "uri")]
    pub target: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Download and verify each new version into DIR/<version>/ (every file's SHA-256 is
    /// checked against the registry's manifest).
    #[arg(long, env = "MODEL_LEDGER_WATCH_DIR")]
    pub dir: Option<PathBuf>,
    /// Command run with `sh -c` after each new version is in place. Its environment has
    /// MODEL_LEDGER_MODEL, MODEL_LEDGER_VERSION, MODEL_LEDGER_URI, MODEL_LEDGER_DIGEST and,
    /// with --dir, MODEL_LEDGER_DIR.
    #[arg(long = "exec", env = "MODEL_LEDGER_WATCH_EXEC")]
    pub hook: Option<String>,
    /// Address `GET /current` is served on.
    #[arg(
        long,
        env = "MODEL_LEDGER_WATCH_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub nats: super::server::NatsConnectionArgs,
}
