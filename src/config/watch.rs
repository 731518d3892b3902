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
    pub nats: WatchNatsArgs,
}

/// How a subscriber reaches NATS: the connection and where the server publishes. Without
/// `--nats-url`, `watch` follows the registry's HTTP event stream instead.
#[derive(Debug, Clone, Args)]
pub struct WatchNatsArgs {
    /// NATS server URL(s), comma-separated. Without one, events come from the registry's
    /// `GET /api/v1/events/stream`.
    #[arg(long, env = "MODEL_LEDGER_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// NATS credentials file (`.creds`).
    #[arg(long, env = "MODEL_LEDGER_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Token for NATS token authentication.
    #[arg(long, env = "MODEL_LEDGER_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// User for NATS user/password authentication.
    #[arg(long, env = "MODEL_LEDGER_NATS_USER")]
    pub nats_user: Option<String>,
    /// Password for NATS user/password authentication.
    #[arg(long, env = "MODEL_LEDGER_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// PEM file of CA certificates to trust for NATS TLS.
    #[arg(long, env = "MODEL_LEDGER_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// The JetStream stream the server publishes to (its --nats-stream).
    #[arg(
        long,
        env = "MODEL_LEDGER_NATS_STREAM",
        default_value = "MODEL_LEDGER_EVENTS"
    )]
    pub nats_stream: String,
    /// The server's --nats-subject-prefix.
    #[arg(
        long,
        env = "MODEL_LEDGER_NATS_SUBJECT_PREFIX",
        default_value = "model_ledger.events"
    )]
    pub nats_subject_prefix: String,
}
