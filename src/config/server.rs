//! The option groups `serve` is assembled from (`#[command(flatten)]` in [`super::ServeArgs`]):
//! publishing to NATS, artifact stores, signed checkpoints, the MLflow tracking upstream and the
//! policies. Kept apart from the command tree so each group reads as one unit, with the same
//! flag / environment / config-file rules as every other option (see the parent module).

use std::path::PathBuf;

use clap::Args;

use super::*;

/// How a process reaches NATS and which stream and subjects the events are on: shared by the
/// server, which publishes there, and `watch`, which subscribes there.
#[derive(Debug, Clone, Args)]
pub struct NatsConnectionArgs {
    /// NATS server URL(s), comma-separated (`nats://host:4222`; `tls://` requires TLS). Without
    /// one, `serve` publishes nothing to NATS and `watch` follows the registry's HTTP event
    /// stream (`GET /api/v1/events/stream`) instead.
    #[arg(long, env = "MODEL_LEDGER_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// NATS credentials file (`.creds`: user JWT and NKey seed, as `nsc` writes it).
    #[arg(long, env = "MODEL_LEDGER_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Token for NATS token authentication.
    #[arg(long, env = "MODEL_LEDGER_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// User for NATS user/password authentication (with `--nats-password`).
    #[arg(long, env = "MODEL_LEDGER_NATS_USER")]
    pub nats_user: Option<String>,
    /// Password for NATS user/password authentication.
    #[arg(long, env = "MODEL_LEDGER_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// PEM file of CA certificates to trust for NATS TLS (implies TLS is required).
    #[arg(long, env = "MODEL_LEDGER_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// JetStream stream the events are in (the server creates or updates it at start-up).
    #[arg(
        long,
        env = "MODEL_LEDGER_NATS_STREAM",
        default_value = "MODEL_LEDGER_EVENTS"
    )]
    pub nats_stream: String,
    /// Subject prefix: events are on `<prefix>.<encoded model>.<event type>`.
    #[arg(
        long,
        env = "MODEL_LEDGER_NATS_SUBJECT_PREFIX",
        default_value = "model_ledger.events"
    )]
    pub nats_subject_prefix: String,
}

/// Where committed events are published (NATS JetStream); see docs/events.md "Subscribing".
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    #[command(flatten)]
    pub connection: NatsConnectionArgs,
    /// JetStream duplicate window: a re-publish of the same event within it is dropped.
    #[arg(long, env = "MODEL_LEDGER_NATS_DUPLICATE_WINDOW", default_value = "2m", value_parser = parse_duration)]
    pub nats_duplicate_window: std::time::Duration,
    /// How long the stream keeps messages (`0` keeps them until `--nats-max-bytes`).
    #[arg(long, env = "MODEL_LEDGER_NATS_MAX_AGE", default_value = "0", value_parser = parse_duration)]
    pub nats_max_age: std::time::Duration,
    /// Largest stream size in bytes before the oldest messages are discarded (-1: unlimited).
    #[arg(long, env = "MODEL_LEDGER_NATS_MAX_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub nats_max_bytes: i64,
    /// CloudEvents `source` attribute of every published event.
    #[arg(
        long,
        env = "MODEL_LEDGER_EVENT_SOURCE",
        default_value = "/model-ledger"
    )]
    pub event_source: String,
    /// Test hook: abort the process right after the N-th acknowledged publish, before the
    /// outbox row is marked (the crash the duplicate window exists for). Only in builds with
    /// the test-only `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    pub relay_crash_after_publish: Option<u64>,
}

/// Where artifacts are stored (see docs/artifacts.md).
#[derive(Debug, Clone, Args)]
pub struct ArtifactArgs {
    /// Store for uploads: `file:///dir`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` or `memory://`. Default: `<data-dir>/artifacts`.
    #[arg(long, env = "MODEL_LEDGER_ARTIFACT_STORE", hide_env_values = true)]
    pub artifact_store: Option<String>,
    /// Further stores whose files may be registered, as NAME=URL (comma-separated in env).
    #[arg(
        long,
        env = "MODEL_LEDGER_ARTIFACT_STORES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub artifact_stores: Vec<String>,
    /// Provider option KEY=VALUE (object_store keys: `aws_…`, `google_…`, `azure_…`); unknown
    /// keys are refused. Credentials are better left to the providers' usual env variables.
    #[arg(
        long = "artifact-store-option",
        env = "MODEL_LEDGER_ARTIFACT_STORE_OPTIONS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub artifact_store_options: Vec<String>,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000` (path-style requests).
    #[arg(long, env = "MODEL_LEDGER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Allow plain-http S3 endpoints (local test servers).
    #[arg(long, env = "MODEL_LEDGER_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// S3 region (default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1).
    #[arg(long, env = "MODEL_LEDGER_S3_REGION")]
    pub s3_region: Option<String>,
    /// Largest accepted artifact file, in bytes (413 above). Separate from --max-body-bytes.
    #[arg(long, env = "MODEL_LEDGER_MAX_ARTIFACT_FILE_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_artifact_file_bytes: u64,
    /// Files of one version hashed concurrently during verification.
    #[arg(long, env = "MODEL_LEDGER_VERIFY_CONCURRENCY", default_value_t = 4)]
    pub verify_concurrency: usize,
    /// A PEM public key (EC P-256/P-384/P-521) whose OpenSSF model signatures are trusted
    /// (`model_signing sign key`); repeatable. Signatures by other keys are refused.
    #[arg(
        long = "trusted-signing-key",
        env = "MODEL_LEDGER_TRUSTED_SIGNING_KEYS",
        value_delimiter = ','
    )]
    pub trusted_signing_keys: Vec<std::path::PathBuf>,
    /// A PEM CA certificate file: model signatures whose certificate chains to it are trusted
    /// (`model_signing sign certificate`); repeatable.
    #[arg(
        long = "trusted-signing-ca",
        env = "MODEL_LEDGER_TRUSTED_SIGNING_CAS",
        value_delimiter = ','
    )]
    pub trusted_signing_cas: Vec<std::path::PathBuf>,
}

/// Checkpoint signing options shared by `serve` and the audit commands.
#[derive(Debug, Clone, Args)]
pub struct CheckpointOpts {
    /// The origin line of signed checkpoints and reports: names this log, so one log's
    /// checkpoint cannot be passed off as another's.
    #[arg(
        long = "checkpoint-origin",
        env = "MODEL_LEDGER_CHECKPOINT_ORIGIN",
        default_value = "model-ledger"
    )]
    pub origin: String,
}

/// The MLflow tracking server that model-ledger forwards tracking calls to and reads run
/// evidence from (see docs/mlflow.md, "Tracking pass-through").
#[derive(Debug, Clone, Args)]
pub struct TrackingArgs {
    /// Base URL of the MLflow tracking server (e.g. `http://mlflow:5000`). Without it, tracking
    /// endpoints answer a JSON error naming this option.
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM", hide_env_values = true)]
    pub mlflow_upstream: Option<String>,
    /// Bearer token model-ledger presents to the upstream.
    #[arg(
        long,
        env = "MODEL_LEDGER_MLFLOW_UPSTREAM_TOKEN",
        hide_env_values = true
    )]
    pub mlflow_upstream_token: Option<String>,
    /// Basic-auth user model-ledger presents to the upstream (with the password).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_USERNAME")]
    pub mlflow_upstream_username: Option<String>,
    /// Basic-auth password for `--mlflow-upstream-username`.
    #[arg(
        long,
        env = "MODEL_LEDGER_MLFLOW_UPSTREAM_PASSWORD",
        hide_env_values = true
    )]
    pub mlflow_upstream_password: Option<String>,
    /// Forward the caller's own `Authorization` (and cookies) to the upstream instead of the
    /// credentials above. Off by default: a model-ledger token is not meant for another server.
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_FORWARD_AUTH")]
    pub mlflow_upstream_forward_auth: bool,
    /// Connection timeout to the upstream (`5s`, `1m`).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub mlflow_upstream_connect_timeout: std::time::Duration,
    /// Longest silence from the upstream before a forwarded call fails with 502 (a transfer
    /// that keeps moving is never cut).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub mlflow_upstream_timeout: std::time::Duration,
    /// Largest request body forwarded to the upstream, in bytes (artifact uploads stream, so
    /// this is not held in memory).
    #[arg(long, env = "MODEL_LEDGER_MLFLOW_UPSTREAM_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024 * 1024)]
    pub mlflow_upstream_max_body_bytes: u64,
}

/// Where the Cedar policies are and what the IdP calls the four roles they use.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// Directory with `model_ledger.cedarschema` and `*.cedar`. Default: `./policies` if present,
    /// else the shipped defaults copied to `<data-dir>/policies`.
    #[arg(long, env = "MODEL_LEDGER_POLICIES")]
    pub policies: Option<PathBuf>,
    /// IdP group whose members get the readers' role.
    #[arg(long, env = "MODEL_LEDGER_GROUP_READERS", default_value = "ml-readers")]
    pub group_readers: String,
    /// IdP group of CI service accounts.
    #[arg(long, env = "MODEL_LEDGER_GROUP_CI", default_value = "ml-ci")]
    pub group_ci: String,
    /// IdP group of administrators.
    #[arg(long, env = "MODEL_LEDGER_GROUP_ADMINS", default_value = "ml-admins")]
    pub group_admins: String,
    /// IdP group allowed to promote to Production.
    #[arg(
        long,
        env = "MODEL_LEDGER_GROUP_RELEASE_MANAGERS",
        default_value = "ml-release-managers"
    )]
    pub group_release_managers: String,
}

impl PolicyArgs {
    pub fn group_names(&self) -> crate::policy::GroupNames {
        crate::policy::GroupNames {
            readers: self.group_readers.clone(),
            ci: self.group_ci.clone(),
            admins: self.group_admins.clone(),
            release_managers: self.group_release_managers.clone(),
        }
    }
}

/// Browser sign-in to the web console through an OpenID Provider (authorization code flow
/// with PKCE; docs/console.md "OIDC").
#[derive(Debug, Clone, Args)]
pub struct ConsoleArgs {
    /// The issuer the console signs people in with: one of the `--oidc-issuer`s, written
    /// exactly as there (its keys and groups claim verify the ID token). Without it the
    /// console offers no OIDC sign-in.
    #[arg(long, env = "MODEL_LEDGER_CONSOLE_OIDC_ISSUER")]
    pub console_oidc_issuer: Option<String>,
    /// The console's client id at that issuer (the ID token's audience).
    #[arg(long, env = "MODEL_LEDGER_CONSOLE_OIDC_CLIENT_ID")]
    pub console_oidc_client_id: Option<String>,
    /// File holding the client secret (first line); omit for a public client (PKCE alone).
    /// The secret is read at start-up and never logged.
    #[arg(long, env = "MODEL_LEDGER_CONSOLE_OIDC_CLIENT_SECRET_FILE")]
    pub console_oidc_client_secret_file: Option<PathBuf>,
    /// Scopes asked for, space-separated; must include `openid`. Add the scope that puts
    /// groups in the ID token where the IdP needs one (docs/console.md).
    #[arg(
        long,
        env = "MODEL_LEDGER_CONSOLE_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub console_oidc_scopes: String,
    /// The URL browsers reach the console at (`https://registry.example.com`): the redirect
    /// URI registered at the IdP is `<url>/signin/oidc/callback`, and cookies are `Secure`
    /// when it is https.
    #[arg(long, env = "MODEL_LEDGER_CONSOLE_EXTERNAL_URL")]
    pub console_external_url: Option<String>,
}
