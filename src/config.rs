//! Command-line and environment configuration.
//!
//! Every option has a flag and an environment variable of the same name
//! (`--database-url` / `MODEL_LEDGER_DATABASE_URL`) and may also come from a TOML file named by
//! `--config`: its keys are the option names with `_` (`database_url = "…"`). Precedence is
//! flag, then environment, then file, then default. The file is applied by exporting its keys
//! as environment variables before clap parses, so one mechanism serves all three sources.
//!
//! `--help` shows each option's current environment value, which is handy until the value is a
//! secret that ends up in a terminal recording, a CI log or a support ticket. Every option that
//! can hold a credential — tokens, passwords, and URLs or store options that may embed one
//! (`postgres://user:password@…`, `nats://token@…`, SAS-signed store URLs) — is therefore
//! declared with `hide_env_values`; the `help_never_prints_secrets` test keeps it that way.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod file;
mod server;
mod watch;
pub use file::{ConfigFileError, apply_config_file};
pub use server::{
    ArtifactArgs, CheckpointOpts, ConsoleArgs, NatsArgs, NatsConnectionArgs, PolicyArgs,
    TrackingArgs,
};
pub use watch::WatchArgs;

/// Where the embedded store, artifacts and keys live unless `--data-dir` says otherwise:
/// relative, so a trial install stays in the directory it was started from.
pub const DEFAULT_DATA_DIR: &str = "./model-ledger-data";

#[derive(Debug, Parser)]
#[command(
    name = "model-ledger",
    version,
    about = "Event-sourced, policy-gated ML model registry"
)]
pub struct Cli {
    /// TOML file with option values (keys as in `--help`, with `_` for `-`).
    #[arg(long, env = "MODEL_LEDGER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "MODEL_LEDGER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once per process; boxing `serve`'s options would only add noise at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(StoreArgs),
    /// Rebuild every projection table from the event log.
    Rebuild(StoreArgs),
    /// Copy the whole event log from one store to another (verifying the chain), then rebuild
    /// the target's projections: turns a trial SQLite install into a PostgreSQL one.
    MigrateStore(MigrateStoreArgs),
    /// Print a development token signed with the data directory's dev key (for `serve --dev-auth`).
    Token(TokenArgs),
    /// Validate or test the Cedar policies offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit tools: verify the hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Follow `models:/NAME/STAGE` or `models:/NAME@ALIAS` (over NATS, or the server's event
    /// stream without it): download and verify each new version, run a hook, serve `/current`.
    Watch(WatchArgs),
    /// Upload a directory as a new version of NAME; prints the version number alone on stdout.
    Push(PushArgs),
    /// Download a version's files (e.g. `models:/NAME/Production`) into DIR, checking each
    /// file's SHA-256; exits non-zero on any mismatch.
    Pull(PullArgs),
    /// Ask the server to re-hash a version's files and record the outcome; exits 0 only when
    /// every file matches its manifest.
    Verify(ArtifactVerifyArgs),
    /// Record an OpenSSF model signature (the file `model_signing sign` wrote) for a version
    /// and print whether it covers exactly the version's files; exits 0 only when verified.
    SignVerify(SignVerifyArgs),
    /// Ask for a version to move to a stage (a transition request, docs/approvals.md); prints
    /// the request id alone on stdout.
    Request(RequestArgs),
    /// Approve the open request to move a version to a stage; the approval that completes it
    /// executes the transition.
    Approve(DecideRequestArgs),
    /// Reject the open request to move a version to a stage.
    Reject(DecideRequestArgs),
    /// The caller's inbox: open transition requests they may act on, oldest first.
    Requests(InboxArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `models:/NAME/VERSION` (or any URI `resolve` accepts).
    pub uri: String,
    /// The stage to move to (Staging, Production, Archived, None).
    #[arg(long)]
    pub stage: String,
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DecideRequestArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `models:/NAME/VERSION` (or any URI `resolve` accepts).
    pub uri: String,
    /// The stage the open request asks for.
    #[arg(long)]
    pub stage: String,
    #[arg(long)]
    pub comment: Option<String>,
    /// When approving: archive the stage's other versions as the transition executes.
    #[arg(long)]
    pub archive_existing_versions: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InboxArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Also list open requests the caller cannot act on.
    #[arg(long)]
    pub all: bool,
    /// Print the requests as JSON instead of one line each.
    #[arg(long)]
    pub json: bool,
}

/// How client subcommands reach the server.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The registry's base URL.
    #[arg(
        long,
        env = "MODEL_LEDGER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token (see `model-ledger token` for development servers).
    #[arg(long, env = "MODEL_LEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Do not draw a progress line on stderr.
    #[arg(long, env = "MODEL_LEDGER_NO_PROGRESS")]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Registered model name (created if missing).
    pub name: String,
    /// Directory whose files (recursively) become the version's artifact.
    pub dir: PathBuf,
    /// A metric of the version, as NAME=VALUE (e.g. `--metric f1=0.91`); repeatable. Quality
    /// gates (model tags `gate.<metric>`) read them.
    #[arg(long = "metric", value_name = "NAME=VALUE", value_parser = parse_metric)]
    pub metrics: Vec<(String, f64)>,
    /// An OpenSSF model signature of DIR (`model_signing sign ... DIR`), recorded for the new
    /// version once it is created; the push fails if the server does not trust its signer.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SignVerifyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `models:/NAME/VERSION` (or any URI `resolve` accepts).
    pub uri: String,
    /// The signature file (`model.sig` by default in model_signing).
    pub signature: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `models:/NAME/VERSION`, `models:/NAME/STAGE` or `models:/NAME@ALIAS`.
    pub uri: String,
    /// Destination directory (created if missing).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ArtifactVerifyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// `models:/NAME/VERSION` (or any URI `resolve` accepts).
    pub uri: String,
}

/// Where the store is: a database URL, or SQLite inside the data directory.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://…`) URL. Without one, SQLite in the data
    /// directory is used. `DATABASE_URL` is read too.
    #[arg(long, env = "MODEL_LEDGER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the embedded database, artifacts and the dev signing key.
    #[arg(
        long,
        env = "MODEL_LEDGER_DATA_DIR",
        default_value = DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,
    /// Maximum database connections in the pool.
    #[arg(long, env = "MODEL_LEDGER_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StoreArgs {
    /// The effective database URL and whether it is the embedded default.
    pub fn resolved_url(&self) -> (String, bool) {
        if let Some(url) = self
            .database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok())
        {
            return (url, false);
        }
        let path = self.data_dir.join("model-ledger.db");
        (format!("sqlite://{}", path.display()), true)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "MODEL_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "MODEL_LEDGER_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Accept tokens signed by a local key in the data directory (development only; see
    /// `model-ledger token`). On by default for the embedded store when no issuer is set.
    #[arg(long, env = "MODEL_LEDGER_DEV_AUTH")]
    pub dev_auth: bool,
    /// OIDC issuer URL whose tokens are accepted (repeat for several; comma-separated in env).
    #[arg(
        long = "oidc-issuer",
        env = "MODEL_LEDGER_OIDC_ISSUER",
        value_delimiter = ','
    )]
    pub oidc_issuers: Vec<String>,
    /// Accepted token audience(s) for the OIDC issuers.
    #[arg(
        long = "oidc-audience",
        env = "MODEL_LEDGER_OIDC_AUDIENCE",
        value_delimiter = ',',
        default_value = "model-ledger"
    )]
    pub oidc_audiences: Vec<String>,
    /// Claim holding the caller's groups, as a dotted path (`groups`, `roles`, `realm_access.roles`).
    #[arg(long, env = "MODEL_LEDGER_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Audience for one issuer only, as ISSUER=AUDIENCE; replaces --oidc-audience for that
    /// issuer. Repeat for several (also for one issuer; comma-separated in env).
    #[arg(
        long = "oidc-issuer-audience",
        env = "MODEL_LEDGER_OIDC_ISSUER_AUDIENCE",
        value_delimiter = ',',
        value_parser = parse_issuer_pair
    )]
    pub oidc_issuer_audiences: Vec<(String, String)>,
    /// Groups claim for one issuer only, as ISSUER=CLAIM (e.g.
    /// `https://kc.example.com/realms/ml=realm_access.roles`); replaces --oidc-groups-claim for
    /// that issuer. Repeat for several issuers (comma-separated in env).
    #[arg(
        long = "oidc-issuer-groups-claim",
        env = "MODEL_LEDGER_OIDC_ISSUER_GROUPS_CLAIM",
        value_delimiter = ',',
        value_parser = parse_issuer_pair
    )]
    pub oidc_issuer_groups_claims: Vec<(String, String)>,
    /// Clock-skew leeway for `exp` and `nbf`: plain seconds (`30`) or a duration (`30s`, `1m`).
    #[arg(long, env = "MODEL_LEDGER_JWT_LEEWAY_SECS", default_value = "30", value_parser = parse_duration_secs)]
    pub jwt_leeway_secs: u64,
    /// Token header `typ` values accepted (comma-separated in env). The default accepts only
    /// RFC 9068 access tokens; add `JWT` for an IdP that types its access tokens that way
    /// (this also admits its ID tokens; see docs/auth.md).
    #[arg(
        long = "oidc-accepted-token-types",
        env = "MODEL_LEDGER_OIDC_ACCEPTED_TOKEN_TYPES",
        value_delimiter = ',',
        default_value = crate::auth::ACCESS_TOKEN_TYPE
    )]
    pub oidc_accepted_token_types: Vec<String>,
    /// Shortest time between JWKS refetches caused by tokens with an unknown `kid`: how soon a
    /// key rotated in at the IdP is seen, and how often random `kid`s can make us ask.
    #[arg(long, env = "MODEL_LEDGER_OIDC_JWKS_REFETCH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub oidc_jwks_refetch_interval: std::time::Duration,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Largest accepted request body, in bytes (413 above).
    #[arg(long, env = "MODEL_LEDGER_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest wait for a pooled PostgreSQL connection, reconnecting included, before a
    /// request fails with 503. While the database is unreachable requests fail at once
    /// anyway (a check every 250 ms says so); this bounds the requests caught in between.
    #[arg(long, env = "MODEL_LEDGER_DB_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_acquire_timeout: std::time::Duration,
    /// Longest time a client may take to send a request's complete head (request line and
    /// headers), counted from when the server starts waiting for one: after connecting, or
    /// after the previous answer on a keep-alive connection (so idle keep-alive connections
    /// are closed after it too). The connection is then closed (slowloris). `0` turns it off
    /// (only behind a proxy that enforces its own).
    #[arg(long, env = "MODEL_LEDGER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// Longest silence while a request body is being received; the request then fails with
    /// 408 REQUEST_TIMEOUT. It bounds the pauses, not the total, so a large upload that keeps
    /// moving is never cut. `0` turns it off.
    #[arg(long, env = "MODEL_LEDGER_BODY_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub body_read_timeout: std::time::Duration,
    /// A proxy address range (CIDR, e.g. `10.0.0.0/8`; a bare address means just it) whose
    /// `Forwarded` / `X-Forwarded-Host` / `X-Forwarded-Proto` headers are believed when they
    /// build URLs in answers. Repeat for several (comma-separated in env). Default: none, so
    /// those headers are dropped from every request.
    #[arg(
        long = "trusted-proxy",
        env = "MODEL_LEDGER_TRUSTED_PROXY",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A browser origin allowed to call the API cross-origin (`https://console.example.com`,
    /// scheme, host and optional port only). Repeat for several (comma-separated in env).
    /// Default: none, and no CORS headers are sent.
    #[arg(
        long = "cors-allow-origin",
        env = "MODEL_LEDGER_CORS_ALLOW_ORIGIN",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    pub cors_allow_origins: Vec<String>,
    /// Longest wait at shutdown (Ctrl-C, SIGTERM) for in-flight requests to finish; open event
    /// streams end at once. Connections still open after it are closed. A second Ctrl-C exits
    /// at once.
    #[arg(long, env = "MODEL_LEDGER_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// How often to sign a checkpoint of the chain head when it has moved (`10m`, `1h`; `0`
    /// turns periodic checkpoints off). The key is `<data-dir>/checkpoint-ed25519.pem`.
    #[arg(long, env = "MODEL_LEDGER_CHECKPOINT_INTERVAL", default_value = "10m")]
    pub checkpoint_interval: String,
    /// How long a transition request stays open before the server records it as expired
    /// (`7d`, `12h`; docs/approvals.md).
    #[arg(long, env = "MODEL_LEDGER_REQUEST_LIFETIME", default_value = "7d", value_parser = parse_duration)]
    pub request_lifetime: std::time::Duration,
    /// How often the server looks for expired transition requests (`0` turns the sweep off).
    #[arg(long, env = "MODEL_LEDGER_REQUEST_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub request_sweep_interval: std::time::Duration,
    #[command(flatten)]
    pub checkpoint: CheckpointOpts,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub artifacts: ArtifactArgs,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// Registry webhooks (issue #18; docs/webhooks.md).
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// The key webhook secrets are sealed with at rest (AES-256-GCM): 32 bytes as 64 hex
    /// characters or base64. Several, comma-separated, while replacing a key: the first seals,
    /// every one opens. Default: a key generated on first start into
    /// `<data-dir>/webhook-secret.key`. Every server on one database needs the same key.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_SECRET_KEY", hide_env_values = true)]
    pub webhook_secret_key: Option<String>,
    /// Allow webhook receivers on loopback, private, link-local and other non-public addresses
    /// (MLflow's MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS). Off: such URLs are refused when created and
    /// when delivered to.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_ALLOW_PRIVATE_IPS")]
    pub webhook_allow_private_ips: bool,
    /// Longest wait to connect to a webhook receiver.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub webhook_connect_timeout: std::time::Duration,
    /// Longest wait for one delivery attempt as a whole (connect, send, the receiver's answer).
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub webhook_timeout: std::time::Duration,
    /// The first retry's wait after a failed attempt; it doubles per attempt, with jitter.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_RETRY_BASE", default_value = "1s", value_parser = parse_duration)]
    pub webhook_retry_base: std::time::Duration,
    /// The longest wait between two attempts (also caps a receiver's Retry-After).
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_RETRY_MAX_DELAY", default_value = "5m", value_parser = parse_duration)]
    pub webhook_retry_max_delay: std::time::Duration,
    /// How long after its first attempt a delivery is retried before it is marked failed.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_RETRY_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub webhook_retry_window: std::time::Duration,
    /// After a webhook's secret is replaced, how long the old one keeps signing beside the new
    /// one (deliveries then carry both signatures), so receivers can switch over. `0`: at once.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    pub webhook_secret_overlap: std::time::Duration,
    /// Webhook deliveries in flight at once in this process.
    #[arg(long, env = "MODEL_LEDGER_WEBHOOK_CONCURRENCY", default_value_t = 256)]
    pub webhook_concurrency: usize,
    /// Deliveries the fan-out sends and writes together at most (one transaction); a window
    /// holds fewer events when many webhooks receive each.
    #[arg(
        long,
        env = "MODEL_LEDGER_WEBHOOK_WINDOW_DELIVERIES",
        default_value_t = 5_000
    )]
    pub webhook_window_deliveries: usize,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Re-decide every recorded decision in a period (events and denials) with candidate
    /// policies; list those whose outcome would change.
    Replay {
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        store: StoreArgs,
        /// Period start (RFC 3339, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Period end (RFC 3339, exclusive).
        #[arg(long)]
        to: Option<String>,
    },
    /// Validate the policies against the schema (file, line and Cedar's message on error).
    Validate {
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(
            long,
            env = "MODEL_LEDGER_DATA_DIR",
            default_value = DEFAULT_DATA_DIR
        )]
        data_dir: PathBuf,
    },
    /// Run a file of (principal, action, resource, context -> expected) cases.
    Test {
        /// The cases file, e.g. policies/tests/default_policies.json.
        file: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(
            long,
            env = "MODEL_LEDGER_DATA_DIR",
            default_value = DEFAULT_DATA_DIR
        )]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The data directory of the server that should accept the token.
    #[arg(
        long,
        env = "MODEL_LEDGER_DATA_DIR",
        default_value = DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,
    /// Subject (user or service account id).
    #[arg(long)]
    pub sub: String,
    /// Group membership (repeat for several).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Lifetime, e.g. `1h`, `30m`, `3600s`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Mint a service-account token instead of a user token.
    #[arg(long)]
    pub service_account: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateStoreArgs {
    /// Source store URL, e.g. `sqlite://./model-ledger-data/model-ledger.db`.
    #[arg(long)]
    pub from: String,
    /// Target store URL, e.g. `postgres://…`; its event log must be empty.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain over the database (or an NDJSON export with `--file`); exit
    /// non-zero naming the first bad position. With `--checkpoint`, also fail if the log is
    /// shorter than the checkpoint or differs from it at its position.
    Verify(VerifyArgs),
    /// Write matching events to stdout as NDJSON, CSV or JSON, streamed page by page.
    Export(ExportArgs),
    /// Sign a checkpoint of the chain head now, record it, and print it.
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        checkpoint: CheckpointOpts,
    },
    /// Print the checkpoint signing key's public half (PEM), for auditors.
    PublicKey {
        #[arg(
            long,
            env = "MODEL_LEDGER_DATA_DIR",
            default_value = DEFAULT_DATA_DIR
        )]
        data_dir: PathBuf,
    },
    /// Compute an audit report (JSON or CSV on stdout).
    Report(ReportArgs),
    /// Check a signed report against an NDJSON export (from position 1) and a public key.
    VerifyReport {
        /// The signed report (`audit report promotions --sign`).
        report: PathBuf,
        /// The NDJSON export the report is checked against.
        #[arg(long)]
        file: PathBuf,
        /// The signer's public key (`audit public-key`).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// The full state of a model as of a position or time, folded from the log.
    State {
        name: String,
        /// A global position or an RFC 3339 time.
        #[arg(long)]
        as_of: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Verify this NDJSON export instead of a database (no database is opened).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A signed checkpoint (`audit checkpoint`) the log must reach and agree with.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Public key to check the checkpoint's signature with. Default: the data directory's
    /// checkpoint key, if present; without either the signature is not checked (and said so).
    #[arg(long)]
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: ExportFormat,
    /// Only events filed under this model name.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub version: Option<i64>,
    /// Event type(s), comma-separated.
    #[arg(long = "type", value_delimiter = ',')]
    pub event_types: Vec<String>,
    /// Actor subject.
    #[arg(long)]
    pub actor: Option<String>,
    /// IdP group the caller presented (recorded in the decision).
    #[arg(long)]
    pub group: Option<String>,
    /// A determining policy id.
    #[arg(long)]
    pub policy_id: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Events before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Positions after this one.
    #[arg(long)]
    pub after: Option<i64>,
    /// Positions before this one.
    #[arg(long)]
    pub before: Option<i64>,
    #[arg(long)]
    pub limit: Option<u64>,
}

/// How `audit export` encodes events: a mirror of `reports::search::Format`, so `config` does
/// not import `reports` (whose encoders `cli` maps this onto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `{"events":[…],"next_cursor":N|null}`
    Json,
    /// One event envelope per line: verifiable with `audit verify --file`.
    Ndjson,
    /// A header row and one row per event (flattened; not verifiable).
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportKind {
    /// Requested promotions into Staging or Production (`--production-only`).
    Promotions,
    /// Versions now in Production never verified or whose latest verification failed.
    UnverifiedProduction,
    /// Each stay of a version in a stage, with its duration.
    StageDurations,
    /// Refused requests from the access-decision log.
    Denials,
    /// Who registered each promoted version vs who promoted it.
    Sod,
    /// What was in each stage for every model (`--as-of`).
    Stages,
    /// Transition requests opened in the period: outcome, who decided, time to decision.
    Requests,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    pub kind: ReportKind,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Period start (RFC 3339, inclusive).
    #[arg(long)]
    pub from: Option<String>,
    /// Period end (RFC 3339, exclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// For `stages`: a position or RFC 3339 time (default: now).
    #[arg(long)]
    pub as_of: Option<String>,
    /// For `promotions` and `sod`: only promotions to Production.
    #[arg(long)]
    pub production_only: bool,
    /// For `sod`: only promotions by the person who registered the version.
    #[arg(long)]
    pub violations_only: bool,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
    /// For `promotions`: sign the report with the checkpoint key (JSON only).
    #[arg(long)]
    pub sign: bool,
    #[command(flatten)]
    pub checkpoint: CheckpointOpts,
}

/// Parses a duration: plain seconds (`90`, as scripts and older configs write them) or a
/// humantime duration (`90s`, `30m`, `1h 30m`, `2d`, `250ms`).
///
/// Weeks, months and years are refused: humantime counts a month as 30.44 days and a year as
/// 365.25 days, which is never what an operator writing a retention period means, and weeks are
/// left out with them so the accepted units are one short list (ns, us, ms, s, m, h, d and
/// their long spellings). Write `14d` for two weeks.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    const CALENDAR_UNITS: &[&str] = &[
        "w", "week", "weeks", "M", "month", "months", "y", "year", "years",
    ];
    if let Some(unit) = raw
        .split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .find(|unit| CALENDAR_UNITS.contains(unit))
    {
        return Err(format!(
            "invalid duration '{raw}': unit '{unit}' is not accepted (use ns, us, ms, s, m, h \
             or d, e.g. 14d)"
        ));
    }
    humantime::parse_duration(raw)
        .map_err(|e| format!("invalid duration '{raw}': {e} (e.g. 90, 30s, 5m, 1h 30m, 2d)"))
}

/// Parses `ISSUER=VALUE` for the per-issuer options. Split at the first `=`: an issuer URL has
/// no query string (OpenID Connect Discovery forbids one), so it cannot contain `=`.
pub fn parse_issuer_pair(raw: &str) -> Result<(String, String), String> {
    let raw = raw.trim();
    match raw.split_once('=') {
        Some((issuer, value)) if !issuer.trim().is_empty() && !value.trim().is_empty() => {
            Ok((issuer.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!(
            "invalid value '{raw}': expected ISSUER=VALUE, e.g. \
             https://idp.example.com/realms/ml=model-ledger"
        )),
    }
}

/// Parses `NAME=VALUE` for `push --metric`. The value must be a finite number: a gate cannot be
/// met or missed honestly by NaN or an infinity.
pub fn parse_metric(raw: &str) -> Result<(String, f64), String> {
    let parsed = raw
        .split_once('=')
        .map(|(name, value)| (name.trim(), value.trim().parse::<f64>()));
    match parsed {
        Some((name, Ok(value))) if !name.is_empty() && value.is_finite() => {
            Ok((name.to_owned(), value))
        }
        _ => Err(format!(
            "invalid metric '{raw}': expected NAME=NUMBER, e.g. f1=0.91"
        )),
    }
}

/// Parses a `--trusted-proxy` range: CIDR notation, or a bare address for just that host.
pub fn parse_cidr(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    if let Ok(net) = raw.parse::<ipnet::IpNet>() {
        // `10.1.2.3/8` is almost always a typo for `10.0.0.0/8`; say so instead of guessing.
        if net.addr() != net.network() {
            return Err(format!(
                "invalid proxy range '{raw}': host bits are set (did you mean {}?)",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    raw.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!(
                "invalid proxy range '{raw}': expected CIDR (10.0.0.0/8, fd00::/8) or an address"
            )
        })
}

/// Parses a `--cors-allow-origin` value: an origin exactly as browsers send it in `Origin`
/// (`scheme://host[:port]`, no path, no wildcard), so the comparison is a plain string match.
pub fn parse_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let bad = |why: &str| {
        format!("invalid CORS origin '{raw}': {why} (e.g. https://console.example.com)")
    };
    let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("expected scheme://host[:port]"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || raw.ends_with('/')
    {
        return Err(bad("an origin has no path, query or fragment"));
    }
    let origin = url.origin().ascii_serialization();
    if !origin.eq_ignore_ascii_case(raw) {
        return Err(bad(&format!("write it as the browser sends it: {origin}")));
    }
    Ok(origin)
}

/// [`parse_duration`] for options stored as whole seconds (`--jwt-leeway-secs`): `30` and
/// `30s` mean the same; a fraction of a second is refused rather than silently dropped.
pub fn parse_duration_secs(raw: &str) -> Result<u64, String> {
    let duration = parse_duration(raw)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "invalid duration '{}': must be whole seconds",
            raw.trim()
        ));
    }
    Ok(duration.as_secs())
}

#[cfg(test)]
mod tests;
